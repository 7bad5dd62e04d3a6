//===- SimRoles.cpp - the concurrent regions of warp-specialized kernels --===//
//
// A warp-specialized kernel splits its warps by role in one scf.if: a
// producer that fills a ring of shared-memory stages and consumers that
// free them, each waiting on the other's mbarriers. Run one region after
// the other, as the simulator runs divergent code, the first would wait
// for arrivals only the second makes. Roles lets them take turns: a
// region that must wait lets the others run, starting the else-region of
// an enclosing divergent scf.if when it has not run yet. Each started
// region runs on an OS thread of its own (its own stack, since it stops in
// the middle of the interpreter's recursion), and exactly one thread runs
// at a time: the one whose turn it is. A wait that comes around again with
// nothing run in between (no op, no phase completed) is a deadlock, as it
// would be on the GPU.
//
//===----------------------------------------------------------------------===//
#include "codegen/sim/SimInternal.h"

namespace kiln::sim {

Roles::Roles(BlockRunner &runner) : runner(runner) {
  roles.push_back(std::make_unique<Role>());
}

Roles::~Roles() {
  // Each started role was joined by the scf.if that started it.
  for (auto &role : roles)
    if (role->thread.joinable())
      role->thread.join();
}

Roles::Deferred *Roles::unstarted() {
  // The waiting role's own innermost one first: its likely partner.
  for (size_t i = 0; i < roles.size(); ++i) {
    auto &stack = roles[(current + i) % roles.size()]->deferred;
    for (auto it = stack.rbegin(); it != stack.rend(); ++it)
      if ((*it)->role < 0)
        return *it;
  }
  return nullptr;
}

int Roles::next(int from) const {
  for (size_t i = 1; i < roles.size(); ++i) {
    int r = int((from + i) % roles.size());
    if (!roles[r]->done)
      return r;
  }
  return -1;
}

void Roles::switchTo(int role) {
  int self = current;
  std::unique_lock<std::mutex> lock(mutex);
  current = role;
  turn.notify_all();
  turn.wait(lock, [&] { return current == self; });
}

void Roles::start(Deferred &deferred) {
  int id = int(roles.size());
  deferred.role = id;
  roles.push_back(std::make_unique<Role>());
  Role &role = *roles.back();
  role.thread = std::thread([this, id, &deferred, &role] {
    {
      std::unique_lock<std::mutex> lock(mutex);
      turn.wait(lock, [&] { return current == id; });
    }
    role.ok = runner.error.empty() &&
              runner.runBlock(*deferred.block, *deferred.mask,
                              deferred.yielded);
    ++runner.progress;
    std::unique_lock<std::mutex> lock(mutex);
    role.done = true;
    // Someone waits for it: at least the scf.if that started it.
    current = next(id);
    turn.notify_all();
  });
  switchTo(id);
}

bool Roles::waitUntil(llvm::function_ref<bool()> ready) {
  while (true) {
    if (!runner.error.empty())
      return false;
    if (ready())
      return true;
    uint64_t before = runner.progress;
    if (Deferred *deferred = unstarted()) {
      start(*deferred);
      continue;
    }
    int other = next(current);
    if (other < 0)
      return false;
    switchTo(other);
    if (runner.error.empty() && !ready() && runner.progress == before)
      return false;  // every other role waited too, and nothing changed
  }
}

bool Roles::join(Deferred &deferred) {
  Role &role = *roles[deferred.role];
  // Once an error is set, the others fail at their next op or wait.
  bool finished = waitUntil([&] { return role.done; });
  while (!role.done)
    switchTo(deferred.role);
  role.thread.join();
  return finished && role.ok;
}

} // namespace kiln::sim
