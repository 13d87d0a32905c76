// `lockstep generate --coordinator ADDR --prompt 1,2,3 --max-new N`: a client of a serving
// coordinator (lockstep-coordinator --serve ADDR; coordinator/client.h). Tokens are printed as
// they stream in (space-separated, a newline at the end); with --json one object at the end.
// `--shutdown` asks the coordinator to stop instead.
#include <iostream>

#include "command.h"
#include "lockstep/coordinator/client.h"
#include "token_list.h"

namespace lockstep::cli {
namespace {

int Generate(const std::vector<std::string>& args, Context& ctx) {
  po::options_description options("options");
  std::string address, prompt_text;
  int64_t max_new = 16, connect_ms = 5000, reply_ms = 60000;
  model::SamplingOptions sampling;
  options.add_options()("coordinator", po::value<std::string>(&address),
                        "the coordinator's client address (tcp://HOST:PORT or ipc://PATH), "
                        "as lockstep-coordinator --serve printed it")(
      "prompt", po::value<std::string>(&prompt_text), "prompt token ids: 1,2,3")(
      "max-new", po::value<int64_t>(&max_new)->default_value(16), "tokens to generate")(
      "temperature", po::value<double>(&sampling.temperature)->default_value(0.0),
      "sampling temperature; 0 = greedy")(
      "top-p", po::value<double>(&sampling.top_p)->default_value(1.0), "nucleus sampling mass")(
      "sample-seed", po::value<uint64_t>(&sampling.seed)->default_value(0), "sampling seed")(
      "connect-timeout-ms", po::value<int64_t>(&connect_ms)->default_value(5000),
      "give up when the coordinator has not answered within this")(
      "reply-timeout-ms", po::value<int64_t>(&reply_ms)->default_value(60000),
      "give up when the coordinator falls silent this long mid-request")(
      "shutdown", "ask the coordinator to finish what runs, stop its workers and exit");
  po::variables_map vm;
  if (!ParseOrHelp(args,
                   "lockstep generate --coordinator ADDR --prompt 1,2,3 [--max-new N] "
                   "[--temperature T --top-p P --sample-seed S] [--json]\n"
                   "       lockstep generate --coordinator ADDR --shutdown",
                   options, {}, vm)) {
    return 0;
  }
  if (address.empty()) throw UsageError("missing --coordinator ADDR (see generate --help)");
  if (connect_ms <= 0 || reply_ms <= 0) throw UsageError("timeouts must be > 0 ms");
  coordinator::Client client(address, {.connect_timeout = std::chrono::milliseconds(connect_ms),
                                       .reply_timeout = std::chrono::milliseconds(reply_ms)});
  if (vm.count("shutdown")) {
    if (vm.count("prompt")) throw UsageError("give --prompt or --shutdown, not both");
    client.RequestShutdown();
    if (ctx.json) PrintJson({{"shutdown_requested", address}});
    return 0;
  }
  if (prompt_text.empty()) throw UsageError("missing --prompt 1,2,3 (see generate --help)");
  if (max_new < 0) throw UsageError("--max-new must be >= 0");
  if (!(sampling.temperature >= 0.0)) throw UsageError("--temperature must be >= 0");
  if (!(sampling.top_p > 0.0 && sampling.top_p <= 1.0)) {
    throw UsageError("--top-p must be in (0, 1]");
  }
  const std::vector<int32_t> prompt = ParseTokenList(prompt_text, "--prompt");
  const std::vector<int32_t> tokens =
      client.Generate(prompt, max_new, sampling, [&](int32_t token, int64_t index) {
        if (ctx.json) return;
        std::cout << (index > 0 ? " " : "") << token << std::flush;
      });
  if (ctx.json) {
    PrintJson({{"coordinator", address}, {"prompt", prompt}, {"tokens", tokens}});
  } else {
    std::cout << "\n";
  }
  return 0;
}

}  // namespace

CommandGroup GenerateCommand() {
  return {"generate", "send a prompt to a serving coordinator and stream the tokens", Generate};
}

}  // namespace lockstep::cli
