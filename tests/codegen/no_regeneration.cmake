# Builds TARGET in BUILD_DIR twice; the second build must not run flatc or
# flatstore-codegen again (their rules print "flatc <schema>" and
# "flatstore-codegen <schema>").
foreach(round first second)
  execute_process(COMMAND "${CMAKE_COMMAND}" --build "${BUILD_DIR}" --target "${TARGET}"
                  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "the ${round} build of ${TARGET} failed:\n${out}${err}")
  endif()
endforeach()
if(out MATCHES "flatc [^ ]+\\.fbs|flatstore-codegen [^ ]+\\.fbs")
  message(FATAL_ERROR "a build with nothing to do generated code again:\n${out}")
endif()
message(STATUS "second build of ${TARGET} generated nothing")
