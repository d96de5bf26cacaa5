#include "engine/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace engine {
namespace {

api::Status ioError(std::string message) {
  return api::Status(api::ErrorCode::kIo, std::move(message));
}

}  // namespace

api::StatusOr<ReadOnlyMapping> mapReadOnlyFile(const std::string& path, size_t min_bytes,
                                               std::string_view what) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ioError(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ioError(path + ": cannot stat: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return ioError(path + ": not a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < min_bytes) {
    ::close(fd);
    return ioError(path + ": file is " + std::to_string(size) + " bytes, shorter than " +
                   std::string(what));
  }
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) return ioError(path + ": cannot mmap: " + std::strerror(err));
  return ReadOnlyMapping{static_cast<const unsigned char*>(map), size};
}

void unmapFile(const ReadOnlyMapping& mapping) {
  if (mapping.data != nullptr) {
    ::munmap(const_cast<unsigned char*>(mapping.data), mapping.size);
  }
}

}  // namespace engine
