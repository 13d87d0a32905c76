// `lockstep`: plan, schedule, simulate and run LLM inference across many small-memory chips.
// Global options come before the command; each command group parses its own options.

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <iostream>

#include "command.h"
#include "lockstep/common/error.h"
#include "lockstep/common/memory.h"
#include "lockstep/launch/launch.h"

namespace lockstep::cli {
namespace {

std::vector<CommandGroup> Groups() {
  return {TopoCommand(),      ModelCommand(),   PlanCommand(),     ScheduleCommand(),
          SimulateCommand(),  WeightsCommand(), RunCommand(),      GenerateCommand(),
          DeployCommand(),    KeysCommand(),    TokenizeCommand(), DetokenizeCommand(),
          CalibrateCommand(), ServeCommand()};
}

void PrintHelp(const po::options_description& global) {
  std::cout << "usage: lockstep [--log-level LEVEL] [--json] <command> [options]\n\n"
               "Lockstep plans, schedules and runs LLM inference across many small-memory\n"
               "chips joined by fixed-latency links, with a static global schedule.\n\n"
               "commands:\n";
  for (const CommandGroup& g : Groups()) {
    std::cout << "  " << g.name << std::string(10 - std::min<size_t>(9, g.name.size()), ' ')
              << g.summary << "\n";
  }
  std::cout << "\n"
            << global << "\nRun 'lockstep <command> --help' for a command's options.\n"
            << "Exit status: 0 success, 1 runtime failure, 2 usage error.\n";
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  po::options_description global("global options");
  std::string level = "info";
  global.add_options()("help,h", "show this help")("version", "print the version")(
      "log-level", po::value<std::string>(&level)->default_value("info"),
      "stderr log level: trace, debug, info, warn, error, off")(
      "json", "print results as one JSON object on stdout (also accepted after the command)");

  // Global options are the leading arguments that start with '-'.
  size_t first_command = 0;
  std::vector<std::string> leading;
  while (first_command < args.size() && args[first_command].rfind("-", 0) == 0) {
    leading.push_back(args[first_command]);
    if (args[first_command] == "--log-level" && first_command + 1 < args.size()) {
      leading.push_back(args[++first_command]);
    }
    ++first_command;
  }
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(leading).options(global).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(std::string(e.what()) + " (see: lockstep --help)");
  }
  if (vm.count("version")) {
    std::cout << "lockstep " << LOCKSTEP_VERSION << "\n";
    return 0;
  }
  if (vm.count("help")) {
    PrintHelp(global);
    return 0;
  }
  std::vector<std::string> rest(args.begin() + first_command, args.end());
  Context ctx;
  ctx.json = vm.count("json") > 0;
  // --json and --log-level may also follow the command; take them out here so every command
  // accepts them without declaring them.
  for (size_t i = 0; i < rest.size();) {
    if (rest[i] == "--json") {
      ctx.json = true;
      rest.erase(rest.begin() + i);
    } else if (rest[i] == "--log-level" && i + 1 < rest.size()) {
      level = rest[i + 1];
      rest.erase(rest.begin() + i, rest.begin() + i + 2);
    } else if (rest[i].rfind("--log-level=", 0) == 0) {
      level = rest[i].substr(12);
      rest.erase(rest.begin() + i);
    } else {
      ++i;
    }
  }
  auto parsed_level = spdlog::level::from_str(level);
  if (parsed_level == spdlog::level::off && level != "off") {
    throw UsageError("--log-level: unknown level '" + level +
                     "' (valid: trace, debug, info, warn, error, off)");
  }
  ctx.log = spdlog::stderr_color_mt("lockstep");
  ctx.log->set_level(parsed_level);
  ctx.log->set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");

  if (rest.empty()) {
    PrintHelp(global);
    throw UsageError("no command given");
  }
  for (const CommandGroup& g : Groups()) {
    if (g.name == rest[0]) return g.run({rest.begin() + 1, rest.end()}, ctx);
  }
  std::string valid;
  for (const CommandGroup& g : Groups()) valid += (valid.empty() ? "" : ", ") + g.name;
  throw UsageError("unknown command '" + rest[0] + "' (valid: " + valid + ")");
}

}  // namespace
}  // namespace lockstep::cli

int main(int argc, char** argv) {
  lockstep::KeepFreedMemory();  // memory.h: large buffers are reused, not faulted in anew
  try {
    return lockstep::cli::Main(argc, argv);
  } catch (const lockstep::cli::UsageError& e) {
    std::cerr << "lockstep: " << e.what() << "\n";
    return 2;
  } catch (const lockstep::launch::ConfigError& e) {  // a usage error found by the library
    std::cerr << "lockstep: " << e.what() << "\n";
    return 2;
  } catch (const lockstep::Error& e) {
    std::cerr << "lockstep: error: " << e.what() << "\n";
    return 1;
  } catch (const lockstep::launch::Interrupted& e) {
    std::cerr << "lockstep: " << e.what() << "\n";
    return 128 + e.signal();
  } catch (const std::exception& e) {
    std::cerr << "lockstep: internal error: " << e.what() << "\n";
    return 1;
  }
}
