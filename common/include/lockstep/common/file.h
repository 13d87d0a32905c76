// Reading and writing a file whole: the one pair of helpers the codecs use (plans, schedules).
// Writing is whole or not at all: the bytes go to a temporary file beside the target, which is
// renamed over it once complete, so a reader never sees half a file and a failed write leaves
// nothing behind (an existing file at the path stays as it was). Thread-safe for distinct paths.
#pragma once

#include <string>
#include <string_view>

namespace lockstep {

// Throws Error (kNotFound) "cannot write PATH: <reason>" when the folder is missing or not
// writable, the disk is full, or PATH names a folder.
void WriteFileAtomically(const std::string& path, std::string_view bytes);

// The whole file. Throws Error (kNotFound) "PATH: no such WHAT" when it cannot be opened (`what`:
// "plan file"), "PATH: cannot read: <reason>" when reading fails.
std::string ReadFile(const std::string& path, std::string_view what);

}  // namespace lockstep
