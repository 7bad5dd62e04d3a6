// RUN: kiln-opt %s --split-input-file --kiln-cpu-pack-weights=panel-columns=16 | FileCheck %s

// COM: A constant [8, 32] weight in panels of 16: W'[2, 8, 16] =
// COM: transpose(reshape(W)), a new constant; the matmul's N loop splits
// COM: into (panel, column), the output is [.., 2, 16] and is collapsed
// COM: back. W[k, n] = n + 100 k lands at W'[n / 16, k, n % 16] (hex,
// COM: little-endian: 15.0 is 00007041, 100.0 0000C842, 16.0 00008041).
// CHECK-DAG: #[[$A:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d3)>
// CHECK-DAG: #[[$W:.*]] = affine_map<(d0, d1, d2, d3) -> (d1, d3, d2)>
// CHECK-DAG: #[[$O:.*]] = affine_map<(d0, d1, d2, d3) -> (d0, d1, d2)>
// CHECK-LABEL: func.func @matmul
// CHECK: %[[P:.*]] = arith.constant dense<"0x{{[0-9A-F]*}}000070410000C842{{[0-9A-F]*}}"> : tensor<2x8x16xf32>
// COM: The init, a fill, is filled at the new shape.
// CHECK: %[[INIT:.*]] = linalg.fill ins(%{{.*}} : f32) outs(%{{.*}} : tensor<6x2x16xf32>)
// CHECK: %[[G:.*]] = linalg.generic {indexing_maps = [#[[$A]], #[[$W]], #[[$O]]], iterator_types = ["parallel", "parallel", "parallel", "reduction"]} ins(%arg0, %[[P]] : tensor<6x8xf32>, tensor<2x8x16xf32>) outs(%[[INIT]] : tensor<6x2x16xf32>)
// CHECK: tensor.collapse_shape %[[G]] {{\[}}[0], [1, 2]] : tensor<6x2x16xf32> into tensor<6x32xf32>
// COM: The panels' bytes: W[k, n] = n + 100 k lands at W'[n / 16, k, n % 16].
// FOLD-LABEL: func.func @matmul
// COM: (hex, little-endian: 15.0 is 00007041, 100.0 0000C842, 16.0 00008041).
// FOLD: arith.constant dense<"0x{{[0-9A-F]*}}000070410000C842{{[0-9A-F]*}}"> : tensor<2x8x16xf32>
// FOLD-NOT: linalg.transpose
func.func @matmul(%x: tensor<6x8xf32>) -> tensor<6x32xf32> {
  %w = arith.constant dense<[
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0, 19.0, 20.0, 21.0, 22.0, 23.0, 24.0, 25.0, 26.0, 27.0, 28.0, 29.0, 30.0, 31.0],
    [100.0, 101.0, 102.0, 103.0, 104.0, 105.0, 106.0, 107.0, 108.0, 109.0, 110.0, 111.0, 112.0, 113.0, 114.0, 115.0, 116.0, 117.0, 118.0, 119.0, 120.0, 121.0, 122.0, 123.0, 124.0, 125.0, 126.0, 127.0, 128.0, 129.0, 130.0, 131.0],
    [200.0, 201.0, 202.0, 203.0, 204.0, 205.0, 206.0, 207.0, 208.0, 209.0, 210.0, 211.0, 212.0, 213.0, 214.0, 215.0, 216.0, 217.0, 218.0, 219.0, 220.0, 221.0, 222.0, 223.0, 224.0, 225.0, 226.0, 227.0, 228.0, 229.0, 230.0, 231.0],
    [300.0, 301.0, 302.0, 303.0, 304.0, 305.0, 306.0, 307.0, 308.0, 309.0, 310.0, 311.0, 312.0, 313.0, 314.0, 315.0, 316.0, 317.0, 318.0, 319.0, 320.0, 321.0, 322.0, 323.0, 324.0, 325.0, 326.0, 327.0, 328.0, 329.0, 330.0, 331.0],
    [400.0, 401.0, 402.0, 403.0, 404.0, 405.0, 406.0, 407.0, 408.0, 409.0, 410.0, 411.0, 412.0, 413.0, 414.0, 415.0, 416.0, 417.0, 418.0, 419.0, 420.0, 421.0, 422.0, 423.0, 424.0, 425.0, 426.0, 427.0, 428.0, 429.0, 430.0, 431.0],
    [500.0, 501.0, 502.0, 503.0, 504.0, 505.0, 506.0, 507.0, 508.0, 509.0, 510.0, 511.0, 512.0, 513.0, 514.0, 515.0, 516.0, 517.0, 518.0, 519.0, 520.0, 521.0, 522.0, 523.0, 524.0, 525.0, 526.0, 527.0, 528.0, 529.0, 530.0, 531.0],
    [600.0, 601.0, 602.0, 603.0, 604.0, 605.0, 606.0, 607.0, 608.0, 609.0, 610.0, 611.0, 612.0, 613.0, 614.0, 615.0, 616.0, 617.0, 618.0, 619.0, 620.0, 621.0, 622.0, 623.0, 624.0, 625.0, 626.0, 627.0, 628.0, 629.0, 630.0, 631.0],
    [700.0, 701.0, 702.0, 703.0, 704.0, 705.0, 706.0, 707.0, 708.0, 709.0, 710.0, 711.0, 712.0, 713.0, 714.0, 715.0, 716.0, 717.0, 718.0, 719.0, 720.0, 721.0, 722.0, 723.0, 724.0, 725.0, 726.0, 727.0, 728.0, 729.0, 730.0, 731.0]
  ]> : tensor<8x32xf32>
  %e = tensor.empty() : tensor<6x32xf32>
  %z = arith.constant 0.0 : f32
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<6x32xf32>) -> tensor<6x32xf32>
  %y = linalg.matmul ins(%x, %w : tensor<6x8xf32>, tensor<8x32xf32>) outs(%f : tensor<6x32xf32>) -> tensor<6x32xf32>
  return %y : tensor<6x32xf32>
}

// -----

// COM: Left alone: one panel only (N = 16), and a weight that is not a
// COM: constant. An N that is not a multiple of the panel (40, padding
// COM: at most 1/32 of the weight: panel-columns=1 elsewhere) is left alone; a constant read
// COM: transposed ([N, K] read (n, k): a tied embedding as the LM head) is
// COM: packed the same way.
// CHECK-LABEL: func.func @left_alone
// CHECK-NOT: tensor.expand_shape
// CHECK: linalg.matmul ins(%{{.*}}, %{{.*}} : tensor<6x8xf32>, tensor<8x16xf32>)
// CHECK: linalg.matmul ins(%{{.*}}, %{{.*}} : tensor<6x8xf32>, tensor<8x40xf32>)
// CHECK: linalg.matmul ins(%{{.*}}, %{{.*}} : tensor<6x8xf32>, tensor<8x64xf32>)
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<6x8xf32>, tensor<4x8x16xf32>) outs(%{{.*}} : tensor<6x4x16xf32>)
func.func @left_alone(%x: tensor<6x8xf32>, %v: tensor<8x64xf32>) -> (tensor<6x16xf32>, tensor<6x40xf32>, tensor<6x64xf32>, tensor<6x64xf32>) {
  %a = arith.constant dense<1.0> : tensor<8x16xf32>
  %b = arith.constant dense<1.0> : tensor<8x40xf32>
  %t = arith.constant dense<1.0> : tensor<64x8xf32>
  %z = arith.constant 0.0 : f32
  %e1 = tensor.empty() : tensor<6x16xf32>
  %f1 = linalg.fill ins(%z : f32) outs(%e1 : tensor<6x16xf32>) -> tensor<6x16xf32>
  %y1 = linalg.matmul ins(%x, %a : tensor<6x8xf32>, tensor<8x16xf32>) outs(%f1 : tensor<6x16xf32>) -> tensor<6x16xf32>
  %e2 = tensor.empty() : tensor<6x40xf32>
  %f2 = linalg.fill ins(%z : f32) outs(%e2 : tensor<6x40xf32>) -> tensor<6x40xf32>
  %y2 = linalg.matmul ins(%x, %b : tensor<6x8xf32>, tensor<8x40xf32>) outs(%f2 : tensor<6x40xf32>) -> tensor<6x40xf32>
  %e3 = tensor.empty() : tensor<6x64xf32>
  %f3 = linalg.fill ins(%z : f32) outs(%e3 : tensor<6x64xf32>) -> tensor<6x64xf32>
  %y3 = linalg.matmul ins(%x, %v : tensor<6x8xf32>, tensor<8x64xf32>) outs(%f3 : tensor<6x64xf32>) -> tensor<6x64xf32>
  %y4 = linalg.generic {indexing_maps = [affine_map<(m, n, k) -> (m, k)>, affine_map<(m, n, k) -> (n, k)>, affine_map<(m, n, k) -> (m, n)>], iterator_types = ["parallel", "parallel", "reduction"]} ins(%x, %t : tensor<6x8xf32>, tensor<64x8xf32>) outs(%f3 : tensor<6x64xf32>) {
  ^bb0(%in: f32, %w: f32, %acc: f32):
    %p = arith.mulf %in, %w : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<6x64xf32>
  return %y1, %y2, %y3, %y4 : tensor<6x16xf32>, tensor<6x40xf32>, tensor<6x64xf32>, tensor<6x64xf32>
}

// -----

// COM: Two functions reading one weight (a checkpoint's prefill and decode)
// COM: read one packed constant.
// CHECK-LABEL: func.func @prefill
// CHECK: arith.constant dense_resource<w.panels16> : tensor<2x4x16xf32>
// CHECK-LABEL: func.func @decode
// CHECK: arith.constant dense_resource<w.panels16> : tensor<2x4x16xf32>
func.func @prefill(%x: tensor<3x4xf32>) -> tensor<3x32xf32> {
  %w = arith.constant dense_resource<w> : tensor<4x32xf32>
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<3x32xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<3x32xf32>) -> tensor<3x32xf32>
  %y = linalg.matmul ins(%x, %w : tensor<3x4xf32>, tensor<4x32xf32>) outs(%f : tensor<3x32xf32>) -> tensor<3x32xf32>
  return %y : tensor<3x32xf32>
}
func.func @decode(%x: tensor<1x4xf32>) -> tensor<1x32xf32> {
  %w = arith.constant dense_resource<w> : tensor<4x32xf32>
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<1x32xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<1x32xf32>) -> tensor<1x32xf32>
  %y = linalg.matmul ins(%x, %w : tensor<1x4xf32>, tensor<4x32xf32>) outs(%f : tensor<1x32xf32>) -> tensor<1x32xf32>
  return %y : tensor<1x32xf32>
}

{-#
  dialect_resources: {
    builtin: {
      w: "0x04000000000000000000803F0000004000004040000080400000A0400000C0400000E0400000004100001041000020410000304100004041000050410000604100007041000080410000884100009041000098410000A0410000A8410000B0410000B8410000C0410000C8410000D0410000D8410000E0410000E8410000F0410000F841000000000000803F0000004000004040000080400000A0400000C0400000E0400000004100001041000020410000304100004041000050410000604100007041000080410000884100009041000098410000A0410000A8410000B0410000B8410000C0410000C8410000D0410000D8410000E0410000E8410000F0410000F841000000000000803F0000004000004040000080400000A0400000C0400000E0400000004100001041000020410000304100004041000050410000604100007041000080410000884100009041000098410000A0410000A8410000B0410000B8410000C0410000C8410000D0410000D8410000E0410000E8410000F0410000F841000000000000803F0000004000004040000080400000A0400000C0400000E0400000004100001041000020410000304100004041000050410000604100007041000080410000884100009041000098410000A0410000A8410000B0410000B8410000C0410000C8410000D0410000D8410000E0410000E8410000F0410000F841"
    }
  }
#-}

// -----

// COM: A product of one row reads the weight with unit dims added
// COM: ([1, K, 1, N], the loops (d3, d4, d1, d2)); the panels keep them in
// COM: place: [1, N / P, K, 1, P], read (d4, d2, d5, d1, d3) once N (d2)
// COM: splits into (d2, d3) and the loops after it shift by one.
// CHECK-DAG: #[[$WR:.*]] = affine_map<(d0, d1, d2, d3, d4, d5) -> (d4, d2, d5, d1, d3)>
// CHECK-DAG: #[[$AR:.*]] = affine_map<(d0, d1, d2, d3, d4, d5) -> (d0, d4, d5)>
// CHECK-DAG: #[[$OR:.*]] = affine_map<(d0, d1, d2, d3, d4, d5) -> (d0, d1, d2, d3)>
// CHECK-LABEL: func.func @one_row
// CHECK: %[[P:.*]] = arith.constant dense_resource<w.panels16> : tensor<2x8x16xf32>
// CHECK: %[[R:.*]] = tensor.expand_shape %[[P]] {{\[}}[0, 1], [2], [3, 4]] output_shape [1, 2, 8, 1, 16] : tensor<2x8x16xf32> into tensor<1x2x8x1x16xf32>
// CHECK: linalg.generic {indexing_maps = [#[[$AR]], #[[$WR]], #[[$OR]]], iterator_types = ["parallel", "parallel", "parallel", "parallel", "reduction", "reduction"]} ins(%{{.*}}, %[[R]] : tensor<1x1x8xf32>, tensor<1x2x8x1x16xf32>) outs(%{{.*}} : tensor<1x1x2x16xf32>)
func.func @one_row(%x: tensor<1x1x8xf32>) -> tensor<1x1x32xf32> {
  %w = arith.constant dense_resource<w> : tensor<8x32xf32>
  %w4 = tensor.expand_shape %w [[0, 1], [2, 3]] output_shape [1, 8, 1, 32] : tensor<8x32xf32> into tensor<1x8x1x32xf32>
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<1x1x32xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<1x1x32xf32>) -> tensor<1x1x32xf32>
  %y = linalg.generic {indexing_maps = [affine_map<(d0, d1, d2, d3, d4) -> (d0, d3, d4)>, affine_map<(d0, d1, d2, d3, d4) -> (d3, d4, d1, d2)>, affine_map<(d0, d1, d2, d3, d4) -> (d0, d1, d2)>], iterator_types = ["parallel", "parallel", "parallel", "reduction", "reduction"]} ins(%x, %w4 : tensor<1x1x8xf32>, tensor<1x8x1x32xf32>) outs(%f : tensor<1x1x32xf32>) {
  ^bb0(%a: f32, %b: f32, %acc: f32):
    %p = arith.mulf %a, %b : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  } -> tensor<1x1x32xf32>
  return %y : tensor<1x1x32xf32>
}

{-#
  dialect_resources: {
    builtin: {
      w: "0x04000000000000000000803F0000004000004040000080400000A0400000C0400000E0400000004100001041000020410000304100004041000050410000604100007041000080410000884100009041000098410000A0410000A8410000B0410000B8410000C0410000C8410000D0410000D8410000E0410000E8410000F0410000F841000000000000803F0000004000004040000080400000A0400000C0400000E0400000004100001041000020410000304100004041000050410000604100007041000080410000884100009041000098410000A0410000A8410000B0410000B8410000C0410000C8410000D0410000D8410000E0410000E8410000F0410000F841000000000000803F0000004000004040000080400000A0400000C0400000E0400000004100001041000020410000304100004041000050410000604100007041000080410000884100009041000098410000A0410000A8410000B0410000B8410000C0410000C8410000D0410000D8410000E0410000E8410000F0410000F841000000000000803F0000004000004040000080400000A0400000C0400000E0400000004100001041000020410000304100004041000050410000604100007041000080410000884100009041000098410000A0410000A8410000B0410000B8410000C0410000C8410000D0410000D8410000E0410000E8410000F0410000F841000000000000803F0000004000004040000080400000A0400000C0400000E0400000004100001041000020410000304100004041000050410000604100007041000080410000884100009041000098410000A0410000A8410000B0410000B8410000C0410000C8410000D0410000D8410000E0410000E8410000F0410000F841000000000000803F0000004000004040000080400000A0400000C0400000E0400000004100001041000020410000304100004041000050410000604100007041000080410000884100009041000098410000A0410000A8410000B0410000B8410000C0410000C8410000D0410000D8410000E0410000E8410000F0410000F841000000000000803F0000004000004040000080400000A0400000C0400000E0400000004100001041000020410000304100004041000050410000604100007041000080410000884100009041000098410000A0410000A8410000B0410000B8410000C0410000C8410000D0410000D8410000E0410000E8410000F0410000F841000000000000803F0000004000004040000080400000A0400000C0400000E0400000004100001041000020410000304100004041000050410000604100007041000080410000884100009041000098410000A0410000A8410000B0410000B8410000C0410000C8410000D0410000D8410000E0410000E8410000F0410000F841"
    }
  }
#-}

// -----

// COM: N = 520 is 32.5 panels of 16: padded to 33 (8 columns, under 1/32
// COM: of the weight), computed into a [3, 33, 16] output whose first 520
// COM: columns are the result.
// CHECK-LABEL: func.func @padded
// CHECK: %[[G:.*]] = linalg.generic {{.*}} ins(%{{.*}}, %{{.*}} : tensor<3x4xf32>, tensor<33x4x16xf32>) outs(%{{.*}} : tensor<3x33x16xf32>)
// CHECK: %[[WHOLE:.*]] = tensor.collapse_shape %[[G]] {{\[}}[0], [1, 2]] : tensor<3x33x16xf32> into tensor<3x528xf32>
// CHECK: %[[Y:.*]] = tensor.extract_slice %[[WHOLE]][0, 0] [3, 520] [1, 1] : tensor<3x528xf32> to tensor<3x520xf32>
// CHECK: return %[[Y]]
func.func @padded(%x: tensor<3x4xf32>) -> tensor<3x520xf32> {
  %w = arith.constant dense<1.0> : tensor<4x520xf32>
  %z = arith.constant 0.0 : f32
  %e = tensor.empty() : tensor<3x520xf32>
  %f = linalg.fill ins(%z : f32) outs(%e : tensor<3x520xf32>) -> tensor<3x520xf32>
  %y = linalg.matmul ins(%x, %w : tensor<3x4xf32>, tensor<4x520xf32>) outs(%f : tensor<3x520xf32>) -> tensor<3x520xf32>
  return %y : tensor<3x520xf32>
}

// -----

// COM: Weights decoded from 4-bit integers (com.microsoft MatMulNBits, the
// COM: importer's kiln.block_quantized generic: W[k][n] = (q - 8) * s[n],
// COM: 16-row blocks, 32 columns): the integers, scales and zero points are
// COM: stored again in panels ([panel, K / 2, 16] bytes, [panel, blocks,
// COM: 16] scales and zero points), a decoding of rank 3 reads them with
// COM: the panel's column innermost, and the contraction reads it as it
// COM: reads a constant's panels. q(n, k) = (n + k) % 16, so panel 0's first
// COM: bytes hold columns 0, 1, .. at rows 0 and 1: 0x10, 0x21, 0x32; column 16 starts
// COM: panel 1 with 0x10 again; the scales of panel 1 are 17, 18, ..
// CHECK-LABEL: func.func @block_quantized
// CHECK-DAG: %[[Q:.*]] = arith.constant dense<"0x102132435465768798A9BACBDCEDFE0F{{[0-9A-F]*}}"> : tensor<2x8x16xi8>
// CHECK-DAG: %[[S:.*]] = arith.constant dense<{{\[\[\[}}1.000000e+00, {{.*}}1.600000e+01]], {{\[\[}}1.700000e+01, {{.*}}> : tensor<2x1x16xf32>
// CHECK-DAG: %[[Z:.*]] = arith.constant dense<8.000000e+00> : tensor<2x1x16xf32>
// CHECK: %[[W:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<2x16x16xf32>) attrs = {{.*}}kiln.block_quantized = {{[{]}}bits = 4 : i64, block_size = 16 : i64}
// CHECK: %[[J:.*]] = linalg.index 0
// CHECK: %[[K:.*]] = linalg.index 1
// CHECK: %[[P:.*]] = linalg.index 2
// CHECK: %[[ROW:.*]] = arith.divui %[[K]], %c2
// CHECK: tensor.extract %[[Q]][%[[J]], %[[ROW]], %[[P]]]
// CHECK: %[[BLK:.*]] = arith.divui %[[K]], %c16
// CHECK: tensor.extract %[[S]][%[[J]], %[[BLK]], %[[P]]]
// CHECK: tensor.extract %[[Z]][%[[J]], %[[BLK]], %[[P]]]
// CHECK: linalg.generic {{.*}} ins(%{{.*}}, %[[W]] : tensor<3x16xf32>, tensor<2x16x16xf32>) outs(%{{.*}} : tensor<3x2x16xf32>)
// CHECK-NOT: tensor<16x32xf32>
#id = affine_map<(k, n) -> (k, n)>
func.func @block_quantized(%x: tensor<3x16xf32>) -> tensor<3x32xf32> {
  %packed = arith.constant dense<[[[16, 50, 84, 118, -104, -70, -36, -2]], [[33, 67, 101, -121, -87, -53, -19, 15]], [[50, 84, 118, -104, -70, -36, -2, 16]], [[67, 101, -121, -87, -53, -19, 15, 33]], [[84, 118, -104, -70, -36, -2, 16, 50]], [[101, -121, -87, -53, -19, 15, 33, 67]], [[118, -104, -70, -36, -2, 16, 50, 84]], [[-121, -87, -53, -19, 15, 33, 67, 101]], [[-104, -70, -36, -2, 16, 50, 84, 118]], [[-87, -53, -19, 15, 33, 67, 101, -121]], [[-70, -36, -2, 16, 50, 84, 118, -104]], [[-53, -19, 15, 33, 67, 101, -121, -87]], [[-36, -2, 16, 50, 84, 118, -104, -70]], [[-19, 15, 33, 67, 101, -121, -87, -53]], [[-2, 16, 50, 84, 118, -104, -70, -36]], [[15, 33, 67, 101, -121, -87, -53, -19]], [[16, 50, 84, 118, -104, -70, -36, -2]], [[33, 67, 101, -121, -87, -53, -19, 15]], [[50, 84, 118, -104, -70, -36, -2, 16]], [[67, 101, -121, -87, -53, -19, 15, 33]], [[84, 118, -104, -70, -36, -2, 16, 50]], [[101, -121, -87, -53, -19, 15, 33, 67]], [[118, -104, -70, -36, -2, 16, 50, 84]], [[-121, -87, -53, -19, 15, 33, 67, 101]], [[-104, -70, -36, -2, 16, 50, 84, 118]], [[-87, -53, -19, 15, 33, 67, 101, -121]], [[-70, -36, -2, 16, 50, 84, 118, -104]], [[-53, -19, 15, 33, 67, 101, -121, -87]], [[-36, -2, 16, 50, 84, 118, -104, -70]], [[-19, 15, 33, 67, 101, -121, -87, -53]], [[-2, 16, 50, 84, 118, -104, -70, -36]], [[15, 33, 67, 101, -121, -87, -53, -19]]]> : tensor<32x1x8xi8>
  %scales = arith.constant dense<[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0, 19.0, 20.0, 21.0, 22.0, 23.0, 24.0, 25.0, 26.0, 27.0, 28.0, 29.0, 30.0, 31.0, 32.0]> : tensor<32xf32>
  %e = tensor.empty() : tensor<16x32xf32>
  %w = linalg.generic {indexing_maps = [#id], iterator_types = ["parallel", "parallel"]} outs(%e : tensor<16x32xf32>) attrs = {kiln.block_quantized = {bits = 4 : i64, block_size = 16 : i64}} {
  ^bb0(%out: f32):
    %k = linalg.index 0 : index
    %n = linalg.index 1 : index
    %c2 = arith.constant 2 : index
    %c4 = arith.constant 4 : index
    %c8 = arith.constant 8 : index
    %c16 = arith.constant 16 : index
    %c15 = arith.constant 15 : i32
    %block = arith.divui %k, %c16 : index
    %in = arith.remui %k, %c16 : index
    %bit = arith.muli %in, %c4 : index
    %at = arith.divui %bit, %c8 : index
    %sh = arith.remui %bit, %c8 : index
    %byte = tensor.extract %packed[%n, %block, %at] : tensor<32x1x8xi8>
    %wide = arith.extui %byte : i8 to i32
    %s = arith.index_cast %sh : index to i32
    %shifted = arith.shrui %wide, %s : i32
    %v = arith.andi %shifted, %c15 : i32
    %scale = tensor.extract %scales[%n] : tensor<32xf32>
    %f = arith.uitofp %v : i32 to f32
    %zero = arith.constant 8.0 : f32
    %d = arith.subf %f, %zero : f32
    %r = arith.mulf %d, %scale : f32
    linalg.yield %r : f32
  } -> tensor<16x32xf32>
  %z = arith.constant 0.0 : f32
  %e2 = tensor.empty() : tensor<3x32xf32>
  %fill = linalg.fill ins(%z : f32) outs(%e2 : tensor<3x32xf32>) -> tensor<3x32xf32>
  %y = linalg.matmul ins(%x, %w : tensor<3x16xf32>, tensor<16x32xf32>) outs(%fill : tensor<3x32xf32>) -> tensor<3x32xf32>
  return %y : tensor<3x32xf32>
}
