// The CPU implementation of engine::Backend: fp32 math over weights read in place from the
// checkpoint's mmap (bf16/f16 widened in registers, never copied; block-quantized ones copied
// into huge pages, see CpuBackendOptions::copy_quantized), a persistent thread pool that
// splits matmul output rows, attention work items and elementwise ops across cores, and inner
// loops chosen at run time (engine/cpu/kernels.h): AVX-512 BF16 dot products where the CPU has
// them, else AVX2+FMA, else portable C++.
//
// It is the reference the CUDA backend is tested against and the fallback where there is no GPU.
// Not thread-safe: one engine thread drives it (its verbs use the pool internally).
#pragma once

#include <memory>
#include <optional>

#include "engine/backend.h"
#include "engine/quant/quant.h"

namespace engine {

// Instruction sets of the inner loops, best first. A choice the CPU lacks falls back to the best
// one below it that it has.
enum class CpuIsa { kBest, kAvx512Bf16, kAvx2, kPortable };

struct CpuBackendOptions {
  int threads = 0;             // threads doing the work, the calling thread included; 0 = all
  CpuIsa isa = CpuIsa::kBest;  // tests pin each one in turn
  // Quantize BF16/F16/F32 matrices (prepareMatrix, prepareExperts) to this block format when
  // they are prepared, into backend memory (the checkpoint mapping is then no longer read), in
  // the format quant::formatForColumns picks. Matrices that arrive block-quantized (from GGUF)
  // are used as stored, or copied (copy_quantized).
  std::optional<quant::QType> quantize;
  // Copy matrices that arrive block-quantized (GGUF) out of the checkpoint mapping into backend
  // memory, and hand the mapping's pages back. Backend memory of 2 MB and more asks for 2 MB
  // pages (transparent huge pages, where the kernel allows them on request): reading 4 KB file
  // pages costs a TLB miss per page, dear in a virtual machine and worst for a mixture of
  // experts, whose experts are read in scattered 1-3 MB slices (26B-A4B: decode 1.4x faster).
  // Loading takes longer (a copy of the file) and processes no longer share the page cache. A
  // matrix whose copy would not fit in the memory available stays mapped.
  bool copy_quantized = true;
};

// Whether this CPU runs `isa` natively (kBest and kPortable: always).
bool cpuSupports(CpuIsa isa);

std::unique_ptr<Backend> makeCpuBackend(const CpuBackendOptions& options = {});

}  // namespace engine
