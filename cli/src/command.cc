#include "command.h"

#include <cctype>
#include <iostream>
#include <sstream>

namespace lockstep::cli {

bool ParseOrHelp(const std::vector<std::string>& args, const std::string& usage,
                 const po::options_description& options,
                 const po::positional_options_description& positional, po::variables_map& vm) {
  po::options_description general("general options (accepted by every command)");
  general.add_options()("help,h", "show this help");
  po::options_description all;
  all.add(options).add(general);
  try {
    po::store(po::command_line_parser(args).options(all).positional(positional).run(), vm);
    if (vm.count("help")) {
      std::cout
          << "usage: " << usage << "\n\n"
          << all << "  --json                 print the result as one JSON object\n"
          << "  --log-level LEVEL      stderr log level: trace, debug, info, warn, error, off\n\n";
      return false;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    // The command is the usage line's leading words, up to the first argument or option.
    std::string command;
    std::istringstream words(usage);
    for (std::string w; words >> w && std::islower(static_cast<unsigned char>(w[0]));) {
      command += (command.empty() ? "" : " ") + w;
    }
    throw UsageError(std::string(e.what()) + " (see: " + command + " --help)");
  }
  return true;
}

void PrintJson(const nlohmann::json& j) { std::cout << j.dump(2) << "\n"; }

int DispatchSubcommand(const std::string& group, const std::string& group_summary,
                       const std::vector<Subcommand>& subcommands,
                       const std::vector<std::string>& args, Context& ctx) {
  auto help = [&] {
    std::cout << "usage: lockstep " << group << " <command> [options]\n\n"
              << group_summary << "\n\ncommands:\n";
    for (const Subcommand& s : subcommands) {
      std::cout << "  " << s.name << std::string(12 - std::min<size_t>(11, s.name.size()), ' ')
                << s.summary << "\n";
    }
    std::cout << "\nRun 'lockstep " << group << " <command> --help' for its options.\n";
  };
  if (args.empty()) {
    help();
    throw UsageError("'lockstep " + group + "' needs a command");
  }
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    help();
    return 0;
  }
  for (const Subcommand& s : subcommands) {
    if (s.name == args[0]) return s.run({args.begin() + 1, args.end()}, ctx);
  }
  std::string valid;
  for (const Subcommand& s : subcommands) valid += (valid.empty() ? "" : ", ") + s.name;
  throw UsageError("unknown command 'lockstep " + group + " " + args[0] + "' (valid: " + valid +
                   ")");
}

}  // namespace lockstep::cli
