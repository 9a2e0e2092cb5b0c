// Another process writing to a file the tool tests read. Prints "ready" once its first
// commits are done, then:
//   cli_writer storm PATH   moves hit points between 20 monsters in transactions that
//                           keep their sum at 2000, until its standard input closes
//   cli_writer commits PATH N   waits for a line, then makes N commits, each creating
//                           the monster "w-<i>" (i = 0..N-1) in order; prints "done"
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <random>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "flatstore/workspace.h"
#include "game_flatstore.h"

namespace {

using flatstore::TransactionContext;
using flatstore::Workspace;
using flatstore::test::game::Monster;
using flatstore::test::game::MonsterChangeRequest;

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "cli_writer: %s\n", why.c_str());
  std::exit(1);
}

void say(const std::string& line) { std::cout << line << "\n" << std::flush; }

std::unique_ptr<Workspace> openOrDie(const std::string& path) {
  auto ws = Workspace::open(path);
  if (!ws.ok()) die(ws.status().ToString());
  return *std::move(ws);
}

constexpr int kMonsters = 20;

int storm(const std::string& path) {
  auto ws = openOrDie(path);
  auto seeded = ws->performChangesAndWait<Monster>([](TransactionContext& txn) -> absl::Status {
    for (int i = 0; i < kMonsters; ++i) {
      auto m = MonsterChangeRequest::creation();
      m.setName(absl::StrCat("s-", i)).setHp(100);
      FLATSTORE_RETURN_IF_ERROR(txn.submit(m).status());
    }
    return absl::OkStatus();
  });
  if (!seeded.ok()) die(seeded.status().ToString());
  std::atomic<bool> stop{false};
  std::atomic<int64_t> commits{0};
  absl::Notification under_way;
  auto transfer = [&](int seed) {
    std::mt19937 rng(seed);
    while (!stop.load()) {
      int from = static_cast<int>(rng() % kMonsters);
      int to = static_cast<int>(rng() % kMonsters);
      int16_t amount = static_cast<int16_t>(rng() % 5);
      auto r = ws->performChangesAndWait<Monster>([&](TransactionContext& txn) -> absl::Status {
        FLATSTORE_ASSIGN_OR_RETURN(auto a, txn.get<Monster>(absl::StrCat("s-", from), 0));
        FLATSTORE_ASSIGN_OR_RETURN(auto b, txn.get<Monster>(absl::StrCat("s-", to), 0));
        if (a == nullptr || b == nullptr) return absl::InternalError("a monster is missing");
        if (from == to || a->hp() < amount) return absl::OkStatus();
        auto ca = MonsterChangeRequest::changeOf(*a);
        ca.setHp(static_cast<int16_t>(a->hp() - amount));
        auto cb = MonsterChangeRequest::changeOf(*b);
        cb.setHp(static_cast<int16_t>(b->hp() + amount));
        FLATSTORE_RETURN_IF_ERROR(txn.submit(ca).status());
        return txn.submit(cb).status();
      });
      if (!r.ok()) die(r.status().ToString());
      if (commits.fetch_add(1) + 1 == 50) under_way.Notify();
    }
  };
  std::thread a(transfer, 1), b(transfer, 2);
  // "ready" once the storm is under way, so a backup overlaps it.
  under_way.WaitForNotification();
  say("ready");
  std::string line;
  while (std::getline(std::cin, line)) {
  }
  stop.store(true);
  a.join();
  b.join();
  say(absl::StrCat("commits ", commits.load()));
  return ws->shutdown().ok() ? 0 : 1;
}

int commits(const std::string& path, int n) {
  auto ws = openOrDie(path);
  say("ready");
  std::string line;
  if (!std::getline(std::cin, line)) return 1;
  for (int i = 0; i < n; ++i) {
    auto r = ws->performChangesAndWait<Monster>([i](TransactionContext& txn) {
      auto m = MonsterChangeRequest::creation();
      m.setName(absl::StrCat("w-", i)).setHp(static_cast<int16_t>(i));
      return txn.submit(m).status();
    });
    if (!r.ok()) die(r.status().ToString());
  }
  say("done");
  return ws->shutdown().ok() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  ::alarm(300);  // never outlives a test that left it behind
  std::vector<std::string> a(argv + 1, argv + argc);
  int n = 0;
  if (a.size() == 2 && a[0] == "storm") return storm(a[1]);
  if (a.size() == 3 && a[0] == "commits" && absl::SimpleAtoi(a[2], &n)) return commits(a[1], n);
  std::fprintf(stderr, "usage: cli_writer storm PATH | commits PATH N\n");
  return 2;
}
