# Shared helpers: every project target gets the same warnings and sanitizer flags, and every
# test is registered the same way (STYLE.md rule 10).

set(LOCKSTEP_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor)
if(LOCKSTEP_WERROR)
  list(APPEND LOCKSTEP_WARNINGS -Werror)
endif()

if(LOCKSTEP_SANITIZE)
  # -g1 (line tables, after the build type's -g) keeps file:line in sanitizer reports and compiles
  # ~25% faster than full debug info (zmq_transport.cc: 24.5 s against 32.3 s on the 2-vCPU VM);
  # GCC generates the same code at every -g level. The sanitizer build is most of a CI run.
  add_compile_options(-g1)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

# lockstep_library(NAME [INTERFACE]): a folder's library; public headers in <folder>/include.
function(lockstep_target_defaults target)
  target_compile_options(${target} PRIVATE ${LOCKSTEP_WARNINGS})
endfunction()

# lockstep_test(NAME SOURCES... LIBS ... [LABELS ...] [TIMEOUT s]): one GoogleTest binary,
# registered with ctest test by test so failures name the case.
function(lockstep_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  lockstep_target_defaults(${name})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gtest_main GTest::gmock)
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 120)
  endif()
  gtest_discover_tests(${name}
    TEST_PREFIX "${name}."
    DISCOVERY_TIMEOUT 60
    PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS "${ARG_LABELS}"
    WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
endfunction()

include(GoogleTest)

# lockstep_library(<folder> [PUBLIC_DEPS ...] [PRIVATE_DEPS ...]): the folder's library
# `lockstep_<folder>` (alias lockstep::<folder>) from src/*.cc, public headers in include/, and
# its unit tests `<folder>_test` from src/*_test.cc, when there are any.
function(lockstep_library folder)
  cmake_parse_arguments(ARG "" "" "PUBLIC_DEPS;PRIVATE_DEPS;TEST_DEPS" ${ARGN})
  file(GLOB sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/src/*.cc)
  file(GLOB tests CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/src/*_test.cc)
  list(REMOVE_ITEM sources ${tests} "")
  set(target lockstep_${folder})
  add_library(${target} STATIC ${sources})
  target_include_directories(${target} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
                                       PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(${target} PUBLIC ${ARG_PUBLIC_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  lockstep_target_defaults(${target})
  add_library(lockstep::${folder} ALIAS ${target})
  if(tests)
    lockstep_test(${folder}_test SOURCES ${tests} LIBS ${target} ${ARG_PRIVATE_DEPS} ${ARG_TEST_DEPS})
    target_include_directories(${folder}_test PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  endif()
endfunction()
