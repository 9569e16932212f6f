// bitnet/detail/gguf_io.hpp - byte storage and little-endian decoding for gguf.hpp.
//
// Contract: `gguf_bytes` owns the bytes of one GGUF file, either a read-only
// private memory mapping (POSIX) or a heap buffer. It is held by pointer, so the
// address of the bytes never changes while it lives; everything that points into
// a file (keys, strings, tensor data) relies on that. Decoders read little-endian
// values byte by byte, so they work on any host and at any alignment.
#pragma once

#include <cstdint>  // fixed-width integers
#include <cstring>  // std::strerror
#include <memory>   // std::unique_ptr
#include <string>   // error text, paths
#include <string_view>  // message pieces
#include <utility>  // std::move
#include <vector>   // owned buffers

#if defined(__unix__) || defined(__APPLE__)
#define BITNET_GGUF_HAVE_MMAP 1
#include <cerrno>      // errno after open/fstat/mmap
#include <fcntl.h>     // ::open
#include <sys/mman.h>  // ::mmap, ::munmap
#include <sys/stat.h>  // ::fstat, S_ISREG
#include <unistd.h>    // ::close
#else
#define BITNET_GGUF_HAVE_MMAP 0
#include <fstream>  // fallback: read the whole file
#endif

namespace bitnet::detail {

// The bytes of one file. Not copyable or movable: owners hold it by unique_ptr.
class gguf_bytes {
 public:
  gguf_bytes() = default;
  gguf_bytes(const gguf_bytes&) = delete;
  gguf_bytes& operator=(const gguf_bytes&) = delete;
  ~gguf_bytes() {
#if BITNET_GGUF_HAVE_MMAP
    if (map_addr_ != nullptr) ::munmap(map_addr_, map_len_);
#endif
  }

  const std::uint8_t* data() const noexcept { return data_; }
  std::uint64_t size() const noexcept { return size_; }
  bool mapped() const noexcept { return map_addr_ != nullptr; }

  static std::unique_ptr<gguf_bytes> from_vector(std::vector<std::uint8_t> v) {
    auto b = std::unique_ptr<gguf_bytes>(new gguf_bytes());
    b->owned_ = std::move(v);
    b->data_ = b->owned_.data();
    b->size_ = b->owned_.size();
    return b;
  }

  // Maps `path` read-only. On failure returns nullptr and sets `err`.
  static std::unique_ptr<gguf_bytes> map_file(const std::string& path, std::string& err) {
    auto b = std::unique_ptr<gguf_bytes>(new gguf_bytes());
#if BITNET_GGUF_HAVE_MMAP
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      err = std::string("cannot open: ") + std::strerror(errno);
      return nullptr;
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      err = std::string("cannot stat: ") + std::strerror(errno);
      ::close(fd);
      return nullptr;
    }
    if (!S_ISREG(st.st_mode)) {
      err = "not a regular file";
      ::close(fd);
      return nullptr;
    }
    const auto len = static_cast<std::uint64_t>(st.st_size);
    if (len > static_cast<std::uint64_t>(SIZE_MAX)) {
      err = "file is too large to map on this platform";
      ::close(fd);
      return nullptr;
    }
    if (len > 0) {  // mmap of 0 bytes is an error; an empty file is reported by the parser
      void* p = ::mmap(nullptr, static_cast<std::size_t>(len), PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        err = std::string("cannot mmap: ") + std::strerror(errno);
        ::close(fd);
        return nullptr;
      }
      b->map_addr_ = p;
      b->map_len_ = static_cast<std::size_t>(len);
      b->data_ = static_cast<const std::uint8_t*>(p);
    }
    ::close(fd);  // the mapping stays valid without the descriptor
    b->size_ = len;
    return b;
#else
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      err = "cannot open";
      return nullptr;
    }
    in.seekg(0, std::ios::end);
    const auto len = static_cast<std::uint64_t>(in.tellg());
    in.seekg(0, std::ios::beg);
    b->owned_.resize(static_cast<std::size_t>(len));
    if (len > 0 && !in.read(reinterpret_cast<char*>(b->owned_.data()), static_cast<std::streamsize>(len))) {
      err = "cannot read";
      return nullptr;
    }
    b->data_ = b->owned_.data();
    b->size_ = len;
    return b;
#endif
  }

 private:
  const std::uint8_t* data_ = nullptr;
  std::uint64_t size_ = 0;
  std::vector<std::uint8_t> owned_;
  void* map_addr_ = nullptr;
  std::size_t map_len_ = 0;
};

// Builds a message by appending only. `"a" + std::string(...)` and `std::string&& +
// std::string&&` may call insert(0, ...), which GCC 12 at -O2/-O3 flags with false
// -Wrestrict / -Wstringop-overflow warnings in whatever TU inlines the code.
struct gguf_msg {
  std::string s;
  gguf_msg operator+(std::string_view v) && {
    s.append(v);
    return std::move(*this);
  }
  operator std::string() && { return std::move(s); }  // NOLINT: implicit by design
};

// Little-endian loads and stores of N-byte unsigned values.
inline std::uint64_t gguf_load_le(const std::uint8_t* p, unsigned nbytes) noexcept {
  std::uint64_t v = 0;
  for (unsigned i = 0; i < nbytes; ++i) v |= static_cast<std::uint64_t>(p[i]) << (8 * i);
  return v;
}
inline std::uint16_t gguf_load_u16(const std::uint8_t* p) noexcept { return static_cast<std::uint16_t>(gguf_load_le(p, 2)); }
inline std::uint32_t gguf_load_u32(const std::uint8_t* p) noexcept { return static_cast<std::uint32_t>(gguf_load_le(p, 4)); }
inline std::uint64_t gguf_load_u64(const std::uint8_t* p) noexcept { return gguf_load_le(p, 8); }

inline void gguf_store_le(std::vector<std::uint8_t>& out, std::uint64_t v, unsigned nbytes) {
  for (unsigned i = 0; i < nbytes; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

}  // namespace bitnet::detail
