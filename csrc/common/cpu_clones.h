// POSETR_TARGET_CLONES("avx2", "default", ...) compiles a hot CPU function for each
// listed instruction set and picks one when the library loads (GCC's
// target_clones on x86-64), so wheels built for the baseline still use AVX2 or
// AVX-512 where the CPU has them. Elsewhere it expands to nothing. It only suits
// non-template functions that are not inlined into their callers.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define POSETR_TARGET_CLONES(...) __attribute__((target_clones(__VA_ARGS__)))
#else
#define POSETR_TARGET_CLONES(...)
#endif

// Forces a template body into each clone that calls it, so every clone gets its own
// instruction set's code for it.
#define POSETR_ALWAYS_INLINE inline __attribute__((always_inline))
