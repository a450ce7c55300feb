# Read by cpack after CPackConfig.cmake: the package version can be set at
# packaging time without reconfiguring or rebuilding (scripts/package.sh
# --version, tests/package).
if(DEFINED ENV{ZW_PACKAGE_VERSION} AND NOT "$ENV{ZW_PACKAGE_VERSION}" STREQUAL "")
  set(CPACK_PACKAGE_VERSION "$ENV{ZW_PACKAGE_VERSION}")
  set(CPACK_DEBIAN_PACKAGE_VERSION "$ENV{ZW_PACKAGE_VERSION}")
endif()
