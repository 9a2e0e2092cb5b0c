# flatstore_generate(): generates C++ for FlatBuffers schemas and adds it to a target.
#
#   flatstore_generate(TARGET <target>
#                      SCHEMAS <entity schema.fbs>...
#                      [INCLUDES <included schema.fbs>...]
#                      [INCLUDE_DIRS <dir>...]
#                      [OUTPUT_DIR <dir>]
#                      [FLATC_ARGS <argument>...])
#
# For every file in SCHEMAS, flatc writes <stem>_generated.h and flatstore-codegen writes
# <stem>_flatstore.h (entities, change requests, field descriptors) and
# <stem>_flatstore.cc (table descriptions, key-path readers, encoders, the binary
# schema), which is compiled into the target. <stem> is the file name without its last
# extension, as flatc names its output: game.v2.fbs gives game.v2_flatstore.h. INCLUDES
# are schemas that SCHEMAS include but that declare no entity: they only get flatc's
# header. Headers go to OUTPUT_DIR (default: ${CMAKE_CURRENT_BINARY_DIR}/
# flatstore_generated), which is added to the target's include path; the target is
# linked to flatstore::flatstore. When <target> does not exist yet, a static library of
# that name is created, as FlatBuffers' flatbuffers_generate_headers() does. FLATC_ARGS
# are added to every flatc command line (say --no-includes, or --cpp-std c++17); the
# options flatstore needs (--cpp --gen-object-api --gen-compare --scoped-enums) are always
# given. Schemas using flatstore's attributes must declare them for flatc:
# `attribute "primary"; attribute "indexed"; attribute "unique"; attribute "entity";`.
function(flatstore_generate)
  cmake_parse_arguments(ARG "" "TARGET;OUTPUT_DIR" "SCHEMAS;INCLUDES;INCLUDE_DIRS;FLATC_ARGS"
                        ${ARGN})
  if(NOT ARG_TARGET OR NOT ARG_SCHEMAS)
    message(FATAL_ERROR "flatstore_generate: TARGET and SCHEMAS are required")
  endif()
  if(NOT ARG_OUTPUT_DIR)
    set(ARG_OUTPUT_DIR "${CMAKE_CURRENT_BINARY_DIR}/flatstore_generated")
  endif()
  if(NOT TARGET flatbuffers::flatc)
    message(FATAL_ERROR "flatstore_generate: flatc not found (install flatbuffers-compiler)")
  endif()
  if(NOT TARGET ${ARG_TARGET})
    add_library(${ARG_TARGET} STATIC)
  endif()
  set(include_args "")
  foreach(dir IN LISTS ARG_INCLUDE_DIRS)
    get_filename_component(dir "${dir}" ABSOLUTE)
    list(APPEND include_args -I "${dir}")
  endforeach()

  set(outputs "")
  foreach(schema IN LISTS ARG_INCLUDES ARG_SCHEMAS)
    get_filename_component(schema "${schema}" ABSOLUTE)
    # NAME_WLE keeps the inner dots of game.v2.fbs, as flatc does.
    get_filename_component(stem "${schema}" NAME_WLE)
    set(flatc_out "${ARG_OUTPUT_DIR}/${stem}_generated.h")
    add_custom_command(
      OUTPUT "${flatc_out}"
      COMMAND flatbuffers::flatc --cpp --gen-object-api --gen-compare --scoped-enums
              ${ARG_FLATC_ARGS} -o "${ARG_OUTPUT_DIR}" ${include_args} "${schema}"
      DEPENDS "${schema}" ${ARG_INCLUDES}
      COMMENT "flatc ${stem}.fbs"
      VERBATIM)
    list(APPEND outputs "${flatc_out}")
  endforeach()
  foreach(schema IN LISTS ARG_SCHEMAS)
    get_filename_component(schema "${schema}" ABSOLUTE)
    get_filename_component(stem "${schema}" NAME_WLE)
    set(out "${ARG_OUTPUT_DIR}/${stem}_flatstore.h")
    set(source "${ARG_OUTPUT_DIR}/${stem}_flatstore.cc")
    set(stamp "${ARG_OUTPUT_DIR}/${stem}_flatstore.stamp")
    # The tool rewrites the header and source only when their text changes, so that
    # nothing is recompiled for nothing; the stamp, written on every run, is what tells
    # the build that the run is done.
    add_custom_command(
      OUTPUT "${stamp}"
      BYPRODUCTS "${out}" "${source}"
      COMMAND flatstore::flatstore-codegen -o "${ARG_OUTPUT_DIR}" ${include_args}
              --depfile "${ARG_OUTPUT_DIR}/${stem}_flatstore.d" --stamp "${stamp}"
              "${schema}"
      DEPENDS "${schema}" flatstore::flatstore-codegen
      DEPFILE "${ARG_OUTPUT_DIR}/${stem}_flatstore.d"
      COMMENT "flatstore-codegen ${stem}.fbs"
      VERBATIM)
    list(APPEND outputs "${stamp}" "${out}" "${source}")
  endforeach()
  target_sources(${ARG_TARGET} PRIVATE ${outputs})
  target_include_directories(${ARG_TARGET} PUBLIC "${ARG_OUTPUT_DIR}")
  target_link_libraries(${ARG_TARGET} PUBLIC flatstore::flatstore)
endfunction()
