# Read by cpack once per generator (CPACK_PROJECT_CONFIG_FILE in packaging/cpack.cmake).
if(CPACK_GENERATOR STREQUAL "DEB" AND NOT CPACK_PGPULSE_INSTALL_PREFIX STREQUAL "/usr")
  message(FATAL_ERROR "pgpulse: the .deb needs a build configured with -DCMAKE_INSTALL_PREFIX=/usr "
                      "(this one has ${CPACK_PGPULSE_INSTALL_PREFIX}): the binary looks for its compat "
                      "libraries under the prefix, and the unit and /etc files are only installed with /usr.")
endif()
