#include "tests/bench/timing.h"

#include <algorithm>
#include <cmath>

namespace flatstore::bench {

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double microsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::micro>(Clock::now() - start).count();
}

Measurement fromLatencies(int64_t ops, double seconds, std::vector<double> latencies_us) {
  Measurement m;
  m.ops = ops;
  m.ops_per_s = static_cast<double>(ops) / seconds;
  m.cpu_us_per_op = Stopwatch::lastCpuSeconds() * 1e6 / static_cast<double>(ops);
  if (!latencies_us.empty()) {
    std::sort(latencies_us.begin(), latencies_us.end());
    auto at = [&](double q) {
      size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(latencies_us.size())));
      return latencies_us[std::clamp<size_t>(rank, 1, latencies_us.size()) - 1];
    };
    m.p50_us = at(0.50);
    m.p99_us = at(0.99);
    m.max_us = latencies_us.back();
  }
  return m;
}

Measurement throughput(int64_t ops, double seconds) { return fromLatencies(ops, seconds, {}); }

}  // namespace flatstore::bench
