// `lockstep keys ...`: CURVE key pairs for the tcp transport.
#include <iostream>

#include "command.h"
#include "lockstep/transport/curve.h"

namespace lockstep::cli {
namespace {

int Generate(const std::vector<std::string>& args, Context& ctx) {
  po::options_description options("options");
  std::string dir;
  std::string name;
  options.add_options()("output,o", po::value<std::string>(&dir)->required(),
                        "directory for the key files (created if missing)")(
      "name", po::value<std::string>(&name)->default_value("lockstep"),
      "file name stem: writes NAME.public and NAME.secret")("force", "replace existing key files");
  po::variables_map vm;
  if (!ParseOrHelp(args, "lockstep keys generate -o DIR [--name NAME] [--force]", options, {},
                   vm)) {
    return 0;
  }
  if (name.empty() || name.find('/') != std::string::npos) {
    throw UsageError("--name: '" + name + "' must be a non-empty file name without '/'");
  }
  transport::CurveKeyPair keys = transport::GenerateCurveKeyPair();
  transport::CurveKeyFiles files =
      transport::WriteCurveKeyPair(keys, dir, name, vm.count("force") > 0);
  ctx.log->debug("wrote {} and {}", files.public_file.string(), files.secret_file.string());
  if (ctx.json) {
    PrintJson({{"public_key", keys.public_key},
               {"public_file", files.public_file.string()},
               {"secret_file", files.secret_file.string()}});
  } else {
    std::cout << "public key  " << keys.public_key << "\n"
              << "public file " << files.public_file.string() << "\n"
              << "secret file " << files.secret_file.string() << " (mode 0600)\n";
  }
  return 0;
}

}  // namespace

CommandGroup KeysCommand() {
  return {
      "keys", "generate CURVE key pairs for the tcp transport",
      [](const std::vector<std::string>& args, Context& ctx) {
        std::vector<Subcommand> subs = {
            {"generate", "write a new key pair (NAME.public, NAME.secret mode 0600)", Generate}};
        return DispatchSubcommand(
            "keys", "CURVE key pairs that encrypt and authenticate tcp links.", subs, args, ctx);
      }};
}

}  // namespace lockstep::cli
