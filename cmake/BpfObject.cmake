# add_bpf_object(NAME SOURCE file.bpf.c [INCLUDES dirs...] [DEPENDS files...])
# clang -target bpf -> NAME.bpf.o -> bpftool gen skeleton -> NAME.skel.h,
# exposed as an INTERFACE target NAME whose include dir holds the skeleton.
find_program(BPF_CLANG NAMES clang-14 clang REQUIRED)
find_program(BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)

# Debian keeps asm/types.h under the multiarch include dir, which clang's BPF
# target does not search by default.
execute_process(COMMAND ${CMAKE_C_COMPILER} -print-multiarch
  OUTPUT_VARIABLE ZW_MULTIARCH OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(ZW_MULTIARCH)
  set(ZW_BPF_SYS_INCLUDE -I/usr/include/${ZW_MULTIARCH})
endif()

function(add_bpf_object name)
  cmake_parse_arguments(ARG "" "SOURCE" "INCLUDES;DEPENDS" ${ARGN})
  set(out_dir ${CMAKE_CURRENT_BINARY_DIR}/bpf)
  set(obj ${out_dir}/${name}.bpf.o)
  set(skel ${out_dir}/${name}.skel.h)
  set(incs)
  foreach(d ${ARG_INCLUDES})
    list(APPEND incs -I${d})
  endforeach()
  file(GLOB_RECURSE dep_headers CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/bpf/*.h)
  add_custom_command(OUTPUT ${obj}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${out_dir}
    COMMAND ${BPF_CLANG} -g -O2 -Wall -Werror -target bpf -mcpu=v3 -D__TARGET_ARCH_x86
            ${ZW_BPF_SYS_INCLUDE} ${incs} -c ${ARG_SOURCE} -o ${obj}
    DEPENDS ${ARG_SOURCE} ${dep_headers} ${ARG_DEPENDS}
    COMMENT "BPF ${name}.bpf.o"
    VERBATIM)
  add_custom_command(OUTPUT ${skel}
    COMMAND sh -c "${BPFTOOL} gen skeleton ${obj} name ${name} > ${skel}.tmp && mv ${skel}.tmp ${skel}"
    DEPENDS ${obj}
    COMMENT "skeleton ${name}.skel.h"
    VERBATIM)
  add_custom_target(${name}_gen DEPENDS ${skel} ${obj})
  add_library(${name} INTERFACE)
  add_dependencies(${name} ${name}_gen)
  target_include_directories(${name} INTERFACE ${out_dir})
  set_property(GLOBAL PROPERTY ${name}_OBJECT ${obj})
endfunction()
