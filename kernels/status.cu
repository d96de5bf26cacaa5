#include "kernels/common.cuh"
#include "kernels/status.h"

namespace kernels {

std::string describe(const Status& s) {
  switch (s.code) {
    case Status::kOk:
      return "ok";
    case Status::kInvalidArgument:
      return std::string(s.what);
    case Status::kCuda:
      return std::string(s.what) + ": CUDA error " + std::to_string(s.cuda_error) + " (" +
             cudaGetErrorString(static_cast<cudaError_t>(s.cuda_error)) + ")";
  }
  return "unknown status";
}

}  // namespace kernels
