// CURVE key pairs for the tcp backend (ZeroMQ CURVE: Curve25519 encryption and authentication).
// Keys travel as Z85 text (40 characters). A key pair is stored as two files in one directory:
// `<name>.public` (mode 0644) and `<name>.secret` (mode 0600, readable by the owner only). Thread-
// safe; key generation uses the operating system's random source.
#pragma once

#include <filesystem>
#include <string>

namespace lockstep::transport {

struct CurveKeyPair {
  std::string public_key;  // Z85, 40 characters
  std::string secret_key;  // Z85, 40 characters
};

// A fresh key pair; Error(kInternal) if this libzmq was built without CURVE.
CurveKeyPair GenerateCurveKeyPair();

// Writes `dir`/<name>.public and `dir`/<name>.secret (creating `dir` if needed). Refuses to
// replace existing files unless `overwrite` (InvalidInput naming the file).
struct CurveKeyFiles {
  std::filesystem::path public_file;
  std::filesystem::path secret_file;
};
CurveKeyFiles WriteCurveKeyPair(const CurveKeyPair& keys, const std::filesystem::path& dir,
                                const std::string& name = "lockstep", bool overwrite = false);

// Reads one Z85 key file (trailing newline allowed); InvalidInput naming the file if it is not a
// 40-character Z85 key. ReadCurveKeyPair reads both files of `name` in `dir`.
std::string ReadCurveKey(const std::filesystem::path& file);
CurveKeyPair ReadCurveKeyPair(const std::filesystem::path& dir,
                              const std::string& name = "lockstep");

}  // namespace lockstep::transport
