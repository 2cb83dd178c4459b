# cmake/Rooms.cmake — the layering of the project's rooms, enforced by the build.
#
# A room is a folder with one library. Rooms are declared bottom-up with
# fhirgw_room(); each names the rooms it USES, and a room may only use rooms
# declared before it (lower in the stack). fhirgw_check_includes() then scans
# every source file of every room at configure time: an #include "room/..." of
# a room that the including room does not use (directly or through a lower
# room) stops the configure with the file and line. Linking alone cannot
# enforce this, because every header is reachable from the source root.

set(FHIRGW_ROOMS "" CACHE INTERNAL "rooms in declaration order")

# fhirgw_room(<target> <folder> USES <target>... SOURCES <file>... [LIBS <external>...])
function(fhirgw_room target folder)
  cmake_parse_arguments(R "" "" "USES;SOURCES;LIBS" ${ARGN})
  set(closure "")
  foreach(used IN LISTS R_USES)
    if(NOT used IN_LIST FHIRGW_ROOMS)
      message(FATAL_ERROR "room ${target} (${folder}) uses ${used}, which is not a lower room")
    endif()
    get_property(used_closure GLOBAL PROPERTY FHIRGW_ROOM_CLOSURE_${used})
    list(APPEND closure ${used} ${used_closure})
  endforeach()
  list(REMOVE_DUPLICATES closure)
  set_property(GLOBAL PROPERTY FHIRGW_ROOM_CLOSURE_${target} "${closure}")
  set_property(GLOBAL PROPERTY FHIRGW_ROOM_FOLDER_${target} "${folder}")
  set_property(GLOBAL PROPERTY FHIRGW_ROOM_SOURCES_${target} "${R_SOURCES}")
  add_library(${target} STATIC ${R_SOURCES})
  target_include_directories(${target} PUBLIC ${CMAKE_SOURCE_DIR})
  target_link_libraries(${target} PUBLIC ${R_USES} ${R_LIBS})
  set(FHIRGW_ROOMS ${FHIRGW_ROOMS} ${target} CACHE INTERNAL "rooms in declaration order")
endfunction()

# The folder a header path belongs to, as the longest room folder prefix.
function(_fhirgw_room_of header out)
  set(best "")
  set(best_len 0)
  foreach(room IN LISTS FHIRGW_ROOMS)
    get_property(folder GLOBAL PROPERTY FHIRGW_ROOM_FOLDER_${room})
    string(LENGTH "${folder}/" len)
    string(SUBSTRING "${header}" 0 ${len} head)
    if(head STREQUAL "${folder}/" AND len GREATER best_len)
      set(best ${room})
      set(best_len ${len})
    endif()
  endforeach()
  set(${out} "${best}" PARENT_SCOPE)
endfunction()

# Scan the rooms' files (and the headers beside them) for includes of rooms
# they do not use. `extra` lists further files to check as members of a room:
# pairs "room;file;room;file...".
function(fhirgw_check_includes)
  set(violations "")
  foreach(room IN LISTS FHIRGW_ROOMS)
    get_property(folder GLOBAL PROPERTY FHIRGW_ROOM_FOLDER_${room})
    get_property(closure GLOBAL PROPERTY FHIRGW_ROOM_CLOSURE_${room})
    file(GLOB files ${CMAKE_SOURCE_DIR}/${folder}/*.c ${CMAKE_SOURCE_DIR}/${folder}/*.h)
    foreach(file IN LISTS files)
      file(STRINGS ${file} lines REGEX "^[ \t]*#[ \t]*include[ \t]+\"")
      foreach(line IN LISTS lines)
        string(REGEX REPLACE "^[ \t]*#[ \t]*include[ \t]+\"([^\"]+)\".*" "\\1" header "${line}")
        _fhirgw_room_of("${header}" owner)
        if(owner AND NOT owner STREQUAL room AND NOT owner IN_LIST closure)
          file(RELATIVE_PATH rel ${CMAKE_SOURCE_DIR} ${file})
          list(APPEND violations "${rel} (room ${room}) includes ${header} (room ${owner}, not below it)")
        endif()
      endforeach()
    endforeach()
  endforeach()
  if(violations)
    list(JOIN violations "\n  " text)
    message(FATAL_ERROR "layering violated:\n  ${text}")
  endif()
endfunction()
