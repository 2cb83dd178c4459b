# cmake/Install.cmake — what `cmake --install` puts where, and how the binary
# finds its run-time data afterwards.
#
#   PREFIX/bin/fhirgw
#   PREFIX/share/fhirgw/certs/make-test-pki   what `fhirgw serve --dev` runs to make a test PKI
#   PREFIX/share/fhirgw/deploy/fhirgw.conf    the example production configuration
#   PREFIX/share/fhirgw/ig/package/           the implementation guide's FHIR package (built into
#   PREFIX/share/fhirgw/ig/NAME-VERSION.tgz   build/ig/ by the ig-package target), which `serve`
#                                             loads when the conformance setting is empty
#   PREFIX/lib/systemd/system/fhirgw.service  the unit, ExecStart pointing at PREFIX/bin/fhirgw
#   PREFIX/lib/systemd/system/fhirgw-backup.{service,timer}  the nightly backup (docs/operations.md)
#   PREFIX/share/doc/fhirgw/                  README and docs
#
# Everything else fhirgw needs is compiled in (the R4 schema, the value sets).
#
# The example configuration is not installed as PREFIX/etc/fhirgw/fhirgw.conf:
# `cmake --install` overwrites without asking, so a re-install would silently
# replace an administrator's edited configuration (keeping conffiles is a
# distribution package's job), and the example names certificates that do not
# exist yet, so a unit started on it would fail anyway. The administrator
# copies it to /etc/fhirgw/ once, as deploy/fhirgw.service describes.
#
# The unit goes to lib/systemd/system under the prefix, spelled out rather than
# CMAKE_INSTALL_LIBDIR (on Debian that is lib/x86_64-linux-gnu, where systemd
# does not look); systemd reads both /usr/lib/systemd/system and
# /usr/local/lib/systemd/system. FHIRGW_SYSTEMD_UNIT_DIR moves it.

include(GNUInstallDirs)

set(FHIRGW_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING
    "where the systemd unit is installed, relative to the prefix (or absolute)")

# The data folder as seen from the binary, so an installed tree can move
# (--prefix at install time, DESTDIR staging, a relocated /opt tree), and the
# configured one in full, for a binary copied out of its tree.
set(FHIRGW_FULL_DATADIR "${CMAKE_INSTALL_FULL_DATADIR}/fhirgw")
file(RELATIVE_PATH FHIRGW_DATADIR_FROM_BIN "${CMAKE_INSTALL_FULL_BINDIR}" "${FHIRGW_FULL_DATADIR}")
target_compile_definitions(gwcli PRIVATE
  FHIRGW_DATADIR="${FHIRGW_FULL_DATADIR}"
  FHIRGW_DATADIR_FROM_BIN="${FHIRGW_DATADIR_FROM_BIN}")

install(TARGETS fhirgw RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(PROGRAMS certs/make-test-pki DESTINATION ${CMAKE_INSTALL_DATADIR}/fhirgw/certs)
install(FILES certs/README.md DESTINATION ${CMAKE_INSTALL_DATADIR}/fhirgw/certs)
install(FILES deploy/fhirgw.conf DESTINATION ${CMAKE_INSTALL_DATADIR}/fhirgw/deploy)
install(DIRECTORY ${FHIRGW_IG_OUT}/package DESTINATION ${CMAKE_INSTALL_DATADIR}/fhirgw/ig)
install(FILES ${FHIRGW_IG_TGZ} DESTINATION ${CMAKE_INSTALL_DATADIR}/fhirgw/ig)
install(DIRECTORY rules/packs DESTINATION ${CMAKE_INSTALL_DATADIR}/fhirgw/rules)
install(DIRECTORY mappings/maps DESTINATION ${CMAKE_INSTALL_DATADIR}/fhirgw/mappings)
install(FILES README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR} FILES_MATCHING PATTERN "*.md")

# The unit names the binary by its full path, known only at install time
# (--prefix may differ from the configured prefix): written then.
install(CODE "
  set(FHIRGW_UNIT_SOURCE_DIR \"${CMAKE_SOURCE_DIR}/deploy\")
  set(FHIRGW_UNIT_STAGING \"${CMAKE_BINARY_DIR}/install-staging\")
  set(FHIRGW_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
  set(FHIRGW_UNIT_DIR \"${FHIRGW_SYSTEMD_UNIT_DIR}\")")
install(SCRIPT cmake/InstallUnit.cmake)
