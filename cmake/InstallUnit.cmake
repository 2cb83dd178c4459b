# cmake/InstallUnit.cmake — run by `cmake --install` (see cmake/Install.cmake):
# installs deploy/fhirgw.service, fhirgw-backup.service and fhirgw-backup.timer,
# each ExecStart pointing at the binary under the prefix being installed to. The configuration path in it stays
# /etc/fhirgw/fhirgw.conf: the gateway's own defaults (certificates,
# organisations) live under /etc/fhirgw too.

if(IS_ABSOLUTE "${FHIRGW_BINDIR}")
  set(bin "${FHIRGW_BINDIR}/fhirgw")
else()
  set(bin "${CMAKE_INSTALL_PREFIX}/${FHIRGW_BINDIR}/fhirgw")
endif()
if(IS_ABSOLUTE "${FHIRGW_UNIT_DIR}")
  set(unit_dir "${FHIRGW_UNIT_DIR}")
else()
  set(unit_dir "${CMAKE_INSTALL_PREFIX}/${FHIRGW_UNIT_DIR}")
endif()

# The gateway's unit, and the backup's service and timer beside it: each ExecStart names the installed binary.
foreach(name fhirgw.service fhirgw-backup.service fhirgw-backup.timer)
  file(READ "${FHIRGW_UNIT_SOURCE_DIR}/${name}" unit)
  string(REGEX REPLACE "\nExecStart=[^ \n]+" "\nExecStart=${bin}" unit "${unit}")
  file(MAKE_DIRECTORY "${FHIRGW_UNIT_STAGING}")
  file(WRITE "${FHIRGW_UNIT_STAGING}/${name}" "${unit}")
  # file(INSTALL) adds DESTDIR and records the file in install_manifest.txt
  file(INSTALL "${FHIRGW_UNIT_STAGING}/${name}" DESTINATION "${unit_dir}"
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endforeach()
