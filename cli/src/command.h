// The pieces every `lockstep` command group shares: the global options, how a command reports
// usage errors (exit 2) versus runtime failures (lockstep::Error, exit 1), and JSON output (one
// object on stdout). Command groups live one per file (topo_command.cc, ...) and are listed in
// main.cc.
#pragma once

#include <spdlog/logger.h>

#include <boost/program_options.hpp>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace lockstep::cli {

namespace po = boost::program_options;

// Thrown for a malformed command line; main prints "lockstep: <message>" and exits 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Context {
  bool json = false;                    // --json: print one JSON object on stdout
  std::shared_ptr<spdlog::logger> log;  // stderr, level from --log-level
};

// One command group: `lockstep <name> ...`.
struct CommandGroup {
  std::string name;
  std::string summary;
  // Receives the arguments after the group name. Returns the exit status.
  std::function<int(const std::vector<std::string>& args, Context& ctx)> run;
};

// Parses `args` against `options` (+ positional), handling --help/-h: prints `usage` and the
// options and returns false when help was asked for. Throws UsageError on a bad command line.
bool ParseOrHelp(const std::vector<std::string>& args, const std::string& usage,
                 const po::options_description& options,
                 const po::positional_options_description& positional, po::variables_map& vm);

// Prints a JSON object on stdout (pretty, with a trailing newline).
void PrintJson(const nlohmann::json& j);

// Dispatches `args[0]` among `subcommands` (name -> summary, run); prints the group's help for
// no argument, --help or -h. Unknown subcommand -> UsageError listing the valid ones.
struct Subcommand {
  std::string name;
  std::string summary;
  std::function<int(const std::vector<std::string>& args, Context& ctx)> run;
};
int DispatchSubcommand(const std::string& group, const std::string& group_summary,
                       const std::vector<Subcommand>& subcommands,
                       const std::vector<std::string>& args, Context& ctx);

// Command groups (one file each).
CommandGroup TopoCommand();
CommandGroup ModelCommand();
CommandGroup PlanCommand();
CommandGroup ScheduleCommand();
CommandGroup SimulateCommand();

// `lockstep topo` subcommands (one file each).
Subcommand TopoGenerateSubcommand();
Subcommand TopoShowSubcommand();
Subcommand TopoValidateSubcommand();
Subcommand TopoRouteSubcommand();
Subcommand TopoHostSubcommand();  // topo_host.cc
CommandGroup WeightsCommand();
CommandGroup RunCommand();
CommandGroup KeysCommand();
CommandGroup GenerateCommand();    // generate_command.cc
CommandGroup DeployCommand();      // deploy_command.cc
CommandGroup TokenizeCommand();    // tokenize_command.cc
CommandGroup DetokenizeCommand();  // tokenize_command.cc
CommandGroup CalibrateCommand();   // calibrate_command.cc
// `lockstep calibrate --host` (calibrate_host.cc), dispatched by CalibrateCommand.
int CalibrateHost(const std::vector<std::string>& args, Context& ctx);
CommandGroup ServeCommand();  // serve_command.cc

}  // namespace lockstep::cli
