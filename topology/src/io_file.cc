// Topology files on disk: atomic save (temporary file + rename) and load.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <system_error>

#include "lockstep/common/error.h"
#include "lockstep/topology/io.h"

namespace lockstep::topology {
namespace {

std::string Reason(int err) { return std::error_code(err, std::generic_category()).message(); }

// Closes a file descriptor on every path out of a function.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  // Closes now and reports close's errno (0 on success): a failed close can mean lost data.
  int Close() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc == 0 ? 0 : errno;
  }

 private:
  int fd_;
};

}  // namespace

void SaveTopology(const Topology& topo, const std::string& path) {
  const std::string text = WriteTopologyYaml(topo);
  const std::filesystem::path target(path);
  const std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : ".";
  // Hidden name beside the target: rename() is atomic only within one file system.
  std::string temp = (dir / ("." + target.filename().string() + ".tmp-XXXXXX")).string();
  const std::string what = "cannot save topology to '" + path + "': ";

  Fd fd(::mkstemp(temp.data()));
  if (fd.get() < 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      throw Error(ErrorCode::kNotFound, what + "directory '" + dir.string() + "' does not exist");
    }
    throw InvalidInput(what + Reason(err));
  }
  auto fail = [&](int err) {
    ::unlink(temp.c_str());
    throw InvalidInput(what + Reason(err));
  };
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(errno);
    }
    done += static_cast<size_t>(n);
  }
  // mkstemp creates 0600; a topology file is an ordinary shareable file.
  if (::fchmod(fd.get(), 0644) != 0) fail(errno);
  // Data on disk before the rename makes it visible: a crash leaves the old file or the new one.
  if (::fsync(fd.get()) != 0) fail(errno);
  if (const int err = fd.Close(); err != 0) fail(err);
  if (::rename(temp.c_str(), path.c_str()) != 0) fail(errno);
}

Topology LoadTopology(const std::string& path) {
  const std::string what = "cannot read topology file '" + path + "': ";
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      throw Error(ErrorCode::kNotFound, "topology file '" + path + "' does not exist");
    }
    throw InvalidInput(what + Reason(err));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw InvalidInput(what + Reason(errno));
  if (S_ISDIR(st.st_mode)) throw InvalidInput(what + "it is a directory");
  std::string text;
  if (S_ISREG(st.st_mode)) text.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw InvalidInput(what + Reason(errno));
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  return ParseTopologyYaml(text, path);
}

}  // namespace lockstep::topology
