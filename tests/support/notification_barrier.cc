#include "tests/support/notification_barrier.h"

#include <atomic>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "game_flatstore.h"
#include "gtest/gtest.h"
#include "tests/support/wait.h"

namespace flatstore::testing {

using ::flatstore::test::game::Event;
using ::flatstore::test::game::EventChangeRequest;
using EF = ::flatstore::test::game::EventFields;

void NotificationBarrier::pass(Workspace& ws) {
  std::string tag = absl::StrCat("barrier ", passed_++);
  auto before = ws.fetch<Event>().where(EF::kind == tag).all();
  ASSERT_TRUE(before.ok()) << before.status();
  auto made = ws.performChangesAndWait<Event>([&tag](TransactionContext& txn) {
    auto e = EventChangeRequest::creation();
    e.setKind(tag);
    return txn.submit(e).status();
  });
  ASSERT_TRUE(made.ok()) << made.status();
  ws.awaitObservers();
  absl::Notification reached;
  std::atomic<bool> notified{false};
  auto token = ws.subscribe(*before, [&](const FetchedResult<Event>& r, const Changeset&) {
    if (r.size() == 1 && !notified.exchange(true)) reached.Notify();
  });
  ASSERT_TRUE(token.ok()) << token.status();
  ASSERT_TRUE(reached.WaitForNotificationWithTimeout(kBoundedWait))
      << "the notification thread did not reach the barrier";
  token->cancel();
}

}  // namespace flatstore::testing
