# Writes OUT, a header defining PGPULSE_REVISION (the source tree's git revision, or "unknown"), at
# build time rather than at configure time, so `pgpulse --version` names the commit it was built from.
# The file is rewritten only when the revision changed, so an unchanged tree rebuilds nothing.
execute_process(COMMAND git rev-parse --short HEAD
  WORKING_DIRECTORY ${SOURCE_DIR}
  OUTPUT_VARIABLE revision OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET RESULT_VARIABLE status)
if(NOT status EQUAL 0 OR NOT revision)
  set(revision unknown)
endif()
set(content "#pragma once\n// Written at build time by cmake/revision.cmake.\n#define PGPULSE_REVISION \"${revision}\"\n")
set(old "")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT old STREQUAL content)
  file(WRITE ${OUT} "${content}")
endif()
