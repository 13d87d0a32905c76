#include "lockstep/transport/curve.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "lockstep/common/error.h"

namespace lockstep::transport {
namespace {

bool IsZ85Key(const std::string& key) {
  if (key.size() != 40) return false;
  uint8_t raw[32];
  return zmq_z85_decode(raw, key.c_str()) != nullptr;
}

void WriteFile(const std::filesystem::path& path, const std::string& text, mode_t mode,
               bool overwrite) {
  int flags = O_WRONLY | O_CREAT | (overwrite ? O_TRUNC : O_EXCL);
  int fd = ::open(path.c_str(), flags, mode);
  if (fd < 0) {
    if (errno == EEXIST) {
      throw InvalidInput(path.string() + ": already exists (use --force to replace the key pair)");
    }
    throw InvalidInput(path.string() + ": cannot create: " + std::strerror(errno));
  }
  // The umask may have loosened or tightened `mode`; the secret must be exactly owner-only.
  bool ok = ::fchmod(fd, mode) == 0 &&
            ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  int err = errno;
  ::close(fd);
  if (!ok) throw InvalidInput(path.string() + ": cannot write: " + std::strerror(err));
}

}  // namespace

CurveKeyPair GenerateCurveKeyPair() {
  char pub[41];
  char sec[41];
  if (zmq_curve_keypair(pub, sec) != 0) {
    throw Error(ErrorCode::kInternal, std::string("cannot generate a CURVE key pair: ") +
                                          zmq_strerror(zmq_errno()) +
                                          " (is libzmq built with CURVE support?)");
  }
  return {pub, sec};
}

CurveKeyFiles WriteCurveKeyPair(const CurveKeyPair& keys, const std::filesystem::path& dir,
                                const std::string& name, bool overwrite) {
  if (!IsZ85Key(keys.public_key) || !IsZ85Key(keys.secret_key)) {
    throw InvalidInput("CURVE keys must be 40-character Z85 strings");
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw InvalidInput(dir.string() + ": cannot create directory: " + ec.message());
  CurveKeyFiles files{dir / (name + ".public"), dir / (name + ".secret")};
  if (!overwrite) {
    for (const auto& f : {files.public_file, files.secret_file}) {
      if (std::filesystem::exists(f)) {
        throw InvalidInput(f.string() + ": already exists (use --force to replace the key pair)");
      }
    }
  }
  WriteFile(files.secret_file, keys.secret_key + "\n", 0600, overwrite);
  WriteFile(files.public_file, keys.public_key + "\n", 0644, overwrite);
  return files;
}

std::string ReadCurveKey(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw Error(ErrorCode::kNotFound, file.string() + ": cannot open key file");
  std::string key;
  std::getline(in, key, '\n');
  std::string extra;
  if (!IsZ85Key(key) || (in >> extra)) {
    throw InvalidInput(file.string() +
                       ": not a CURVE key (expected one line of 40 Z85 characters)");
  }
  return key;
}

CurveKeyPair ReadCurveKeyPair(const std::filesystem::path& dir, const std::string& name) {
  return {ReadCurveKey(dir / (name + ".public")), ReadCurveKey(dir / (name + ".secret"))};
}

}  // namespace lockstep::transport
