// kernels::Status and kernels::Stream: what every launcher in kernels/ returns and launches on.
//
// The headers of kernels/ are plain C++ (no CUDA include), so that engine code compiled by the
// host compiler can call the launchers. Stream is the CUDA runtime's own cudaStream_t type
// (`struct CUstream_st*`), forward-declared here: a cudaStream_t converts to it implicitly, and
// nullptr is the legacy default stream.
//
// Launchers are asynchronous: a returned kOk means the arguments were valid and the launch was
// queued (cudaGetLastError() was clean), not that the kernel has finished or succeeded; errors
// inside the kernel surface at the next synchronising CUDA call.
#pragma once

#include <string>

struct CUstream_st;

namespace kernels {

using Stream = CUstream_st*;

struct Status {
  enum Code {
    kOk = 0,
    kInvalidArgument,  // a shape, pointer or alignment precondition of the launcher failed
    kCuda,             // the launch failed; cuda_error holds the cudaError_t
  };
  Code code = kOk;
  int cuda_error = 0;     // cudaError_t value when code == kCuda
  const char* what = "";  // static text naming the launcher and the failed precondition

  bool ok() const { return code == kOk; }
};

// "kernels::rmsnorm1p: cols must be > 0", "kernels::geglu: CUDA error 209 (no kernel image ...)".
std::string describe(const Status& s);

}  // namespace kernels
