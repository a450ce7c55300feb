# Install layout and the Debian package (CPack DEB); scripts/package.sh
# drives it. Paths are Debian's: the binary in /usr/sbin, the unit in
# /lib/systemd/system (bookworm), the conffile in /etc/zonewall.
include(GNUInstallDirs)

# Man pages and bash completion come from the binary's own command line
# definition (zonewall --generate-man / --generate-completion).
set(ZW_GEN_DIR ${CMAKE_BINARY_DIR}/generated)
# One page per subcommand, whatever subcommands the binary has: the set is
# known only after the build, so the rule's output is a stamp.
add_custom_command(
  OUTPUT ${ZW_GEN_DIR}/docs.stamp
  COMMAND ${CMAKE_COMMAND} -E rm -rf ${ZW_GEN_DIR}/man
  COMMAND ${CMAKE_COMMAND} -E make_directory ${ZW_GEN_DIR}/man
  COMMAND $<TARGET_FILE:zonewall> --generate-man ${ZW_GEN_DIR}/man
  COMMAND ${CMAKE_COMMAND} -E copy ${CMAKE_CURRENT_SOURCE_DIR}/packaging/man/zonewall.json.5
          ${ZW_GEN_DIR}/man/
  COMMAND sh -c "$<TARGET_FILE:zonewall> --generate-completion > ${ZW_GEN_DIR}/zonewall.bash-completion"
  # -n: no name or time stamp in the header, so builds are reproducible.
  COMMAND sh -c "gzip -9nf ${ZW_GEN_DIR}/man/*.[58]"
  COMMAND ${CMAKE_COMMAND} -E touch ${ZW_GEN_DIR}/docs.stamp
  DEPENDS zonewall ${CMAKE_CURRENT_SOURCE_DIR}/packaging/man/zonewall.json.5
  COMMENT "man pages and bash completion from the CLI definition"
  VERBATIM)
add_custom_target(zonewall_docs ALL DEPENDS ${ZW_GEN_DIR}/docs.stamp)

get_property(ZW_BPF_OBJECT GLOBAL PROPERTY zonewall_bpf_OBJECT)
install(FILES ${ZW_BPF_OBJECT} DESTINATION lib/zonewall
        RENAME zonewall.bpf.o)
install(FILES packaging/systemd/zonewall.service DESTINATION /lib/systemd/system)
install(FILES packaging/etc/zonewall.json DESTINATION /etc/zonewall)
install(FILES policies/schema.json DESTINATION ${CMAKE_INSTALL_DATADIR}/zonewall
        RENAME policy.schema.json)
install(FILES policies/inventory.schema.json packaging/zonewall.schema.json
        DESTINATION ${CMAKE_INSTALL_DATADIR}/zonewall)
install(DIRECTORY policies/examples/ DESTINATION ${CMAKE_INSTALL_DATADIR}/zonewall/examples)
install(DIRECTORY ${ZW_GEN_DIR}/man/ DESTINATION ${CMAKE_INSTALL_MANDIR}/man8
        FILES_MATCHING PATTERN "*.8.gz")
install(DIRECTORY ${ZW_GEN_DIR}/man/ DESTINATION ${CMAKE_INSTALL_MANDIR}/man5
        FILES_MATCHING PATTERN "*.5.gz")
install(FILES ${ZW_GEN_DIR}/zonewall.bash-completion
        DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions RENAME zonewall)
install(FILES packaging/debian/copyright README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs)
# Debian wants a changelog in every package; dated by the last commit, so
# that rebuilding the same tree gives the same package.
execute_process(COMMAND git log -1 --format=%cD
  WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}
  OUTPUT_VARIABLE ZW_COMMIT_DATE OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT ZW_COMMIT_DATE)
  set(ZW_COMMIT_DATE "Thu, 01 Jan 1970 00:00:00 +0000")
endif()
file(WRITE ${ZW_GEN_DIR}/changelog.Debian
  "zonewall (${PROJECT_VERSION}) unstable; urgency=medium\n\n"
  "  * Built from the zonewall source tree (scripts/package.sh).\n\n"
  " -- zonewall maintainers <maintainers@zonewall.org>  ${ZW_COMMIT_DATE}\n")
add_custom_command(OUTPUT ${ZW_GEN_DIR}/changelog.Debian.gz
  COMMAND sh -c "gzip -9nc changelog.Debian > changelog.Debian.gz"
  WORKING_DIRECTORY ${ZW_GEN_DIR}
  DEPENDS ${ZW_GEN_DIR}/changelog.Debian
  VERBATIM)
add_custom_target(zonewall_changelog ALL DEPENDS ${ZW_GEN_DIR}/changelog.Debian.gz)
# A native package (no Debian revision): changelog.gz, not changelog.Debian.gz.
install(FILES ${ZW_GEN_DIR}/changelog.Debian.gz DESTINATION ${CMAKE_INSTALL_DOCDIR}
        RENAME changelog.gz)
install(FILES packaging/debian/lintian-overrides DESTINATION ${CMAKE_INSTALL_DATADIR}/lintian/overrides
        RENAME zonewall)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME zonewall)
set(CPACK_PACKAGE_VENDOR "zonewall")
set(CPACK_PACKAGE_CONTACT "zonewall maintainers <maintainers@zonewall.org>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "eBPF zone firewall for VM east-west traffic")
string(CONCAT CPACK_PACKAGE_DESCRIPTION
  "zonewall filters the traffic between virtual machines on one Linux host by\n"
  "zone. eBPF programs on each VM's tap or veth (tc or XDP) judge every packet\n"
  "against a JSON zone policy compiled into BPF maps. Zones come from the VM's\n"
  "identity in libvirt (name, UUID, zone tag), not from addresses. Policies\n"
  "are applied atomically, conntrack survives restarts and upgrades, and the\n"
  "datapath fails closed.")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://zonewall.org/")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "bash-completion")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "libvirt-daemon-system")
set(CPACK_STRIP_FILES bin/zonewall sbin/zonewall)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${CMAKE_CURRENT_SOURCE_DIR}/packaging/debian/conffiles
  ${CMAKE_CURRENT_SOURCE_DIR}/packaging/debian/postinst
  ${CMAKE_CURRENT_SOURCE_DIR}/packaging/debian/prerm
  ${CMAKE_CURRENT_SOURCE_DIR}/packaging/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# ZW_PACKAGE_VERSION in the environment of cpack overrides the version (the
# package test builds two versions of one tree to test upgrades).
set(CPACK_PROJECT_CONFIG_FILE ${CMAKE_CURRENT_SOURCE_DIR}/packaging/cpack-project.cmake)
include(CPack)
