// Priorities as the scheduler's and the writer's queues hold them: one queue per
// Priority, in Priority's order, highest first.
#ifndef FLATSTORE_RUNTIME_PRIORITY_H_
#define FLATSTORE_RUNTIME_PRIORITY_H_

#include <algorithm>

#include "flatstore/transaction.h"

namespace flatstore::internal {

inline constexpr int kPriorityLevels = static_cast<int>(Priority::kBackground) + 1;

// The queue of `priority` (a value outside the enumerators goes to the nearest queue).
inline constexpr int queueOf(Priority priority) {
  return std::clamp(static_cast<int>(priority), 0, kPriorityLevels - 1);
}

}  // namespace flatstore::internal

#endif  // FLATSTORE_RUNTIME_PRIORITY_H_
