// Timing and statistics of flatstore-bench: the clock, a timed region that also reports
// its CPU time (and marks the region for callgrind), what a run measured and how
// latencies become percentiles, and the gate that starts a multi-threaded region.
#pragma once

#include <sys/resource.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define FLATSTORE_BENCH_PROFILE_START() CALLGRIND_START_INSTRUMENTATION
#define FLATSTORE_BENCH_PROFILE_STOP() CALLGRIND_STOP_INSTRUMENTATION
#else
#define FLATSTORE_BENCH_PROFILE_START() ((void)0)
#define FLATSTORE_BENCH_PROFILE_STOP() ((void)0)
#endif

namespace flatstore::bench {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point start);
double microsSince(Clock::time_point start);

// Times one measured region. Run under `valgrind --tool=callgrind --instr-atstart=no`,
// only these regions (in every thread) are profiled; elsewhere the markers are a few
// no-op instructions.
class Stopwatch {
 public:
  Stopwatch() {
    FLATSTORE_BENCH_PROFILE_START();
    cpu_start_ = processCpuSeconds();
    start_ = Clock::now();
  }
  // The seconds since construction; ends the profiled region. Call once.
  double seconds() {
    double s = secondsSince(start_);
    last_cpu_seconds_ = processCpuSeconds() - cpu_start_;
    FLATSTORE_BENCH_PROFILE_STOP();
    return s;
  }
  // CPU time (user + system, all threads) of the last timed region: compared with the
  // wall time it shows how much of a run was spent waiting rather than computing.
  static double lastCpuSeconds() { return last_cpu_seconds_; }

 private:
  static double processCpuSeconds() {
    rusage u;
    getrusage(RUSAGE_SELF, &u);
    auto seconds = [](const timeval& t) {
      return static_cast<double>(t.tv_sec) + t.tv_usec * 1e-6;
    };
    return seconds(u.ru_utime) + seconds(u.ru_stime);
  }

  Clock::time_point start_;
  double cpu_start_;
  static inline double last_cpu_seconds_ = 0;
};

struct Measurement {
  double ops_per_s = 0;
  std::optional<double> p50_us, p99_us, max_us;
  int64_t ops = 0;
  double cpu_us_per_op = 0;  // process CPU time per op (diagnostic, stderr only)
  int64_t commits = 0;       // flatstore's group commits in the timed region (diagnostic)
  // Further figures of a scenario, written into its JSON records and the table under
  // their names (for example "wal_max_bytes"); the driver reports their medians.
  std::vector<std::pair<std::string, double>> extra;
};

// A measurement of `ops` operations in `seconds`, with percentiles of the latencies when
// there are any, and the CPU time of the last Stopwatch region.
Measurement fromLatencies(int64_t ops, double seconds, std::vector<double> latencies_us);
Measurement throughput(int64_t ops, double seconds);

// Releases all threads of a multi-threaded run at once, after each has done its setup.
// Releases all threads of a multi-threaded run at once, after each has done its setup.
class StartGate {
 public:
  // Called by each thread when it is ready; returns once the gate opens.
  void arriveAndWait() {
    std::unique_lock<std::mutex> lock(mu_);
    arrived_ += 1;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
  }
  // Waits until `n` threads arrived.
  void waitArrived(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return arrived_ >= n; });
  }
  void open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  bool open_ = false;
};

}  // namespace flatstore::bench
