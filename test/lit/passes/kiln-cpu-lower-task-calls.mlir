// RUN: kiln-opt %s --split-input-file --kiln-cpu-lower-task-calls | FileCheck %s

// COM: A call of a task becomes ctx->parallel_for(ctx, @<task>_run, &data,
// COM: end - begin, grain): the captured values go into a stack struct that
// COM: <task>_run loads back before it calls the task; the kernel is marked
// COM: for its entry wrapper, and the task becomes internal.
// CHECK-LABEL: llvm.func @kernel
// CHECK-SAME: (%[[X:.*]]: !llvm.ptr, %[[N:.*]]: i64, %[[CTX:.*]]: !llvm.ptr)
// CHECK-SAME: passthrough = ["kiln-cpu-context"]
// CHECK: %[[DATA:.*]] = llvm.alloca %{{.*}} x !llvm.struct<(ptr, i64, i64)>
// CHECK: %[[F0:.*]] = llvm.getelementptr %[[DATA]][0, 0]
// CHECK: llvm.store %[[X]], %[[F0]]
// CHECK: %[[F1:.*]] = llvm.getelementptr %[[DATA]][0, 1]
// CHECK: llvm.store %[[N]], %[[F1]]
// CHECK: %[[PF:.*]] = llvm.load %[[CTX]] : !llvm.ptr -> !llvm.ptr
// CHECK: %[[TRAMPOLINE:.*]] = llvm.mlir.addressof @kernel_task0_run
// CHECK: %[[GRAIN:.*]] = llvm.mlir.constant(7 : i64)
// CHECK: %[[COUNT:.*]] = llvm.sub %[[N]], %{{.*}}
// CHECK: llvm.call %[[PF]](%[[CTX]], %[[TRAMPOLINE]], %[[DATA]], %[[COUNT]], %[[GRAIN]])
// CHECK-NOT: llvm.call @kernel_task0(
// CHECK: llvm.func internal @kernel_task0
// CHECK: llvm.func internal @kernel_task0_run(%[[D:.*]]: !llvm.ptr, %[[B:.*]]: i64, %[[E:.*]]: i64)
// CHECK: %[[G0:.*]] = llvm.getelementptr %[[D]][0, 0]
// CHECK: %[[L0:.*]] = llvm.load %[[G0]] : !llvm.ptr -> !llvm.ptr
// CHECK: %[[G1:.*]] = llvm.getelementptr %[[D]][0, 1]
// CHECK: %[[L1:.*]] = llvm.load %[[G1]] : !llvm.ptr -> i64
// CHECK: llvm.call @kernel_task0(%[[B]], %[[E]], %[[L0]], %[[L1]])
module {
  llvm.func @kernel(%x: !llvm.ptr, %n: i64, %ctx: !llvm.ptr) attributes {kiln.cpu_context} {
    %c0 = llvm.mlir.constant(0 : i64) : i64
    llvm.call @kernel_task0(%c0, %n, %x, %n) : (i64, i64, !llvm.ptr, i64) -> ()
    llvm.return
  }
  llvm.func @kernel_task0(%b: i64, %e: i64, %x: !llvm.ptr, %n: i64) attributes {kiln.task_grain = 7 : i64} {
    llvm.return
  }
}
