# The Debian package, built by CPack. Included at the end of the top-level CMakeLists.txt,
# after the install() rules of the binary and the OpenSSL compat libraries.
#
#   cmake -S . -B build -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=RelWithDebInfo
#   cmake --build build && (cd build && cpack -G DEB)     # build/pgpulse_<version>-1_<arch>.deb
#
# The prefix must be /usr: GNUInstallDirs then picks the multiarch library directory, and
# the binary looks for its compat libraries where this package puts them.

set(PGPULSE_PACKAGING_DIR ${CMAKE_CURRENT_LIST_DIR})

# Absolute destinations: these belong where Debian keeps them, whatever the prefix, so
# they are only installed when the prefix is the packaging one.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  install(FILES ${PGPULSE_PACKAGING_DIR}/deb/pgpulse.yml DESTINATION /etc/pgpulse)
  install(DIRECTORY DESTINATION /etc/pgpulse/queries.d)
  install(FILES ${PGPULSE_PACKAGING_DIR}/deb/default DESTINATION /etc/default RENAME pgpulse)
  install(FILES ${PGPULSE_PACKAGING_DIR}/deb/pgpulse.service DESTINATION /lib/systemd/system)
endif()

# Reference copies: the binary embeds the definitions; these are for reading and for
# copying into a directory named in collectors.directories. Globbed when installing, so a
# package has whatever queries/ and dashboards/ hold then.
install(DIRECTORY ${CMAKE_SOURCE_DIR}/queries/ DESTINATION ${CMAKE_INSTALL_DATADIR}/pgpulse/queries
        FILES_MATCHING PATTERN "*.yaml" PATTERN "METRICS.md")
install(FILES ${CMAKE_SOURCE_DIR}/alerts/pgpulse-rules.yml ${CMAKE_SOURCE_DIR}/alerts/pgpulse-prometheusrule.yaml
              ${CMAKE_SOURCE_DIR}/alerts/runbooks.md
        DESTINATION ${CMAKE_INSTALL_DATADIR}/pgpulse/alerts)
install(DIRECTORY ${CMAKE_SOURCE_DIR}/dashboards/ DESTINATION ${CMAKE_INSTALL_DATADIR}/pgpulse/dashboards
        FILES_MATCHING PATTERN "*.json")
install(DIRECTORY ${PGPULSE_PACKAGING_DIR}/grafana/provisioning/
        DESTINATION ${CMAKE_INSTALL_DATADIR}/pgpulse/grafana/provisioning OPTIONAL
        FILES_MATCHING PATTERN "*.yaml" PATTERN "*.yml")
install(FILES ${CMAKE_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})

set(PGPULSE_PACKAGE_MAINTAINER "pgpulse maintainers <pgpulse@users.noreply.github.com>"
    CACHE STRING "Maintainer field of the Debian package")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME pgpulse)
set(CPACK_PACKAGE_VENDOR pgpulse)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${PGPULSE_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "PostgreSQL metrics for Prometheus")
set(CPACK_PACKAGE_DESCRIPTION
    "pgpulse runs SQL collectors, declared in YAML, against PostgreSQL when Prometheus\n\
scrapes it. One persistent connection per target, read-only transactions with\n\
statement timeouts, partial results when a collector fails. Ships a systemd unit,\n\
a default configuration, Prometheus alert rules and Grafana dashboards.")
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE https://github.com/pgpulse/pgpulse)
# dpkg-shlibdeps (package dpkg-dev) turns the libraries the binary and the compat
# libraries link into Depends; adduser is for the postinst.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "prometheus, prometheus-alertmanager")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PGPULSE_PACKAGING_DIR}/deb/conffiles ${PGPULSE_PACKAGING_DIR}/deb/postinst
    ${PGPULSE_PACKAGING_DIR}/deb/prerm ${PGPULSE_PACKAGING_DIR}/deb/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_SOURCE_GENERATOR TGZ)
set(CPACK_SOURCE_IGNORE_FILES "/\\\\.git/" "/build[^/]*/" "/\\\\.cache/")
# Read by cpack for each generator: refuses a .deb from a build with another prefix.
set(CPACK_PGPULSE_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_PROJECT_CONFIG_FILE ${PGPULSE_PACKAGING_DIR}/deb/cpack-options.cmake)
include(CPack)
