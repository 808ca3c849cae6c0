// output_paths.h: where g4moe may write, and the temporary names it writes under.
//
// Invariants: a temporary name is a hidden sibling of the final path (`<dir>/.<name>.tmp-<pid>-<n>`), unique
// within the process and created exclusively (O_EXCL / mkdir), so writing never truncates or removes a file
// the program did not create; the final path appears only by rename once the output is complete. An output
// that already exists is replaced only when the caller was given explicit permission (a flag such as
// --overwrite); otherwise the command stops with one line that names the path and the way to proceed.
#pragma once

#include <string>

namespace g4 {

// A fresh temporary sibling name of `final_path`; nothing exists under it yet (not created here).
std::string temporary_sibling(const std::string& final_path);

// Creates a fresh temporary sibling directory of `final_dir` and returns its path (fails if it exists).
std::string create_temporary_directory(const std::string& final_dir);

// Throws unless `path` is absent, an empty directory, or `overwrite` is true. `how` ends the message, e.g.
// "pass --overwrite to replace it".
void refuse_existing_output(const std::string& path, bool overwrite, const std::string& how);

// Moves the complete directory `ready` to `final_dir`, replacing what is there (the caller has checked it
// may). The old contents go only once the new directory is in place.
void replace_directory(const std::string& ready, const std::string& final_dir);

}  // namespace g4
