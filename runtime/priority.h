// Priorities as the scheduler's and the writer's queues number them: one queue per
// level, Priority's values in order, highest first.
#ifndef FLATSTORE_RUNTIME_PRIORITY_H_
#define FLATSTORE_RUNTIME_PRIORITY_H_

#include <algorithm>

#include "flatstore/transaction.h"

namespace flatstore::internal {

constexpr int kUserInitiatedLevel = static_cast<int>(Priority::kUserInitiated);
constexpr int kDefaultLevel = static_cast<int>(Priority::kDefault);
constexpr int kBackgroundLevel = static_cast<int>(Priority::kBackground);
constexpr int kPriorityLevels = kBackgroundLevel + 1;

// The queue of a priority level (out-of-range values go to the nearest level).
inline int queueOf(int priority) { return std::clamp(priority, 0, kPriorityLevels - 1); }

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_PRIORITY_H_
