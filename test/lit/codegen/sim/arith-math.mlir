// RUN: kiln-opt %s --kiln-test-simulate --verify-diagnostics

// COM: Every scalar arith and math op the simulator models, one row of the
// COM: buffer each, on x = 0.05 .. 0.8 (16 threads; x equals the compared
// COM: 0.4 in one) and on small integers (j = -5 .. 10); integer results are
// COM: masked to 10 bits and comparisons packed into bits, so the checksum
// COM: stays exact in its printed digits. It pins what each handler
// COM: computes: a handler that computes something else changes the
// COM: checksum. The value is the simulator's output before it was split
// COM: into op families; the ONNX node tests under the simulator check the
// COM: same ops against onnxruntime.
module attributes {gpu.container_module} {
  gpu.module @m {
    // expected-remark @+1 {{ok, checksum 5150160.809379}}
    gpu.func @every_op(%a: memref<96x16xf32>) kernel attributes {kiln.test_launch = {grid = array<i32: 1, 1, 1>, block = array<i32: 16, 1, 1>}} {
      %tid = gpu.thread_id x
      %c0 = arith.constant 0 : index
      %x0 = memref.load %a[%c0, %tid] : memref<96x16xf32>
      %s = arith.constant 0.05 : f32
      %one = arith.constant 1.0 : f32
      %x1 = arith.addf %x0, %one : f32
      %x = arith.mulf %x1, %s : f32
      %k1023 = arith.constant 1023 : i32
      %micro = arith.constant 1.0e-6 : f32
      %y = arith.constant -0.3 : f32
      %yc = arith.constant 0.4 : f32
      %ti = arith.index_cast %tid : index to i32
      %k5 = arith.constant 5 : i32
      %j = arith.subi %ti, %k5 : i32
      %k3 = arith.constant 3 : i32
      %f_addf = arith.addf %x, %y : f32
      %f_subf = arith.subf %x, %y : f32
      %f_mulf = arith.mulf %x, %y : f32
      %f_divf = arith.divf %x, %y : f32
      %f_remf = arith.remf %x, %y : f32
      %f_maximumf = arith.maximumf %x, %y : f32
      %f_minimumf = arith.minimumf %x, %y : f32
      %f_maxnumf = arith.maxnumf %x, %y : f32
      %f_minnumf = arith.minnumf %x, %y : f32
      %f_negf = arith.negf %x : f32
      %m_absf = math.absf %x : f32
      %m_sqrt = math.sqrt %x : f32
      %m_rsqrt = math.rsqrt %x : f32
      %m_floor = math.floor %x : f32
      %m_ceil = math.ceil %x : f32
      %m_trunc = math.trunc %x : f32
      %m_round = math.round %x : f32
      %m_roundeven = math.roundeven %x : f32
      %m_exp = math.exp %x : f32
      %m_exp2 = math.exp2 %x : f32
      %m_expm1 = math.expm1 %x : f32
      %m_log = math.log %x : f32
      %m_log2 = math.log2 %x : f32
      %m_log1p = math.log1p %x : f32
      %m_tanh = math.tanh %x : f32
      %m_erf = math.erf %x : f32
      %m_sin = math.sin %x : f32
      %m_cos = math.cos %x : f32
      %m_tan = math.tan %x : f32
      %m_asin = math.asin %x : f32
      %m_acos = math.acos %x : f32
      %m_atan = math.atan %x : f32
      %m_sinh = math.sinh %x : f32
      %m_cosh = math.cosh %x : f32
      %m_powf = math.powf %x, %y : f32
      %m_atan2 = math.atan2 %x, %y : f32
      %m_copysign = math.copysign %x, %y : f32
      %m_fma = math.fma %x, %y, %x : f32
      %i_addi = arith.addi %j, %k3 : i32
      %l_addi = arith.andi %i_addi, %k1023 : i32
      %r_addi = arith.sitofp %l_addi : i32 to f32
      %i_subi = arith.subi %j, %k3 : i32
      %l_subi = arith.andi %i_subi, %k1023 : i32
      %r_subi = arith.sitofp %l_subi : i32 to f32
      %i_muli = arith.muli %j, %k3 : i32
      %l_muli = arith.andi %i_muli, %k1023 : i32
      %r_muli = arith.sitofp %l_muli : i32 to f32
      %i_divui = arith.divui %j, %k3 : i32
      %l_divui = arith.andi %i_divui, %k1023 : i32
      %r_divui = arith.sitofp %l_divui : i32 to f32
      %i_remui = arith.remui %j, %k3 : i32
      %l_remui = arith.andi %i_remui, %k1023 : i32
      %r_remui = arith.sitofp %l_remui : i32 to f32
      %i_divsi = arith.divsi %j, %k3 : i32
      %l_divsi = arith.andi %i_divsi, %k1023 : i32
      %r_divsi = arith.sitofp %l_divsi : i32 to f32
      %i_remsi = arith.remsi %j, %k3 : i32
      %l_remsi = arith.andi %i_remsi, %k1023 : i32
      %r_remsi = arith.sitofp %l_remsi : i32 to f32
      %i_andi = arith.andi %j, %k3 : i32
      %l_andi = arith.andi %i_andi, %k1023 : i32
      %r_andi = arith.sitofp %l_andi : i32 to f32
      %i_ori = arith.ori %j, %k3 : i32
      %l_ori = arith.andi %i_ori, %k1023 : i32
      %r_ori = arith.sitofp %l_ori : i32 to f32
      %i_xori = arith.xori %j, %k3 : i32
      %l_xori = arith.andi %i_xori, %k1023 : i32
      %r_xori = arith.sitofp %l_xori : i32 to f32
      %i_shli = arith.shli %j, %k3 : i32
      %l_shli = arith.andi %i_shli, %k1023 : i32
      %r_shli = arith.sitofp %l_shli : i32 to f32
      %i_shrui = arith.shrui %j, %k3 : i32
      %l_shrui = arith.andi %i_shrui, %k1023 : i32
      %r_shrui = arith.sitofp %l_shrui : i32 to f32
      %i_shrsi = arith.shrsi %j, %k3 : i32
      %l_shrsi = arith.andi %i_shrsi, %k1023 : i32
      %r_shrsi = arith.sitofp %l_shrsi : i32 to f32
      %i_maxsi = arith.maxsi %j, %k3 : i32
      %l_maxsi = arith.andi %i_maxsi, %k1023 : i32
      %r_maxsi = arith.sitofp %l_maxsi : i32 to f32
      %i_minsi = arith.minsi %j, %k3 : i32
      %l_minsi = arith.andi %i_minsi, %k1023 : i32
      %r_minsi = arith.sitofp %l_minsi : i32 to f32
      %i_maxui = arith.maxui %j, %k3 : i32
      %l_maxui = arith.andi %i_maxui, %k1023 : i32
      %r_maxui = arith.sitofp %l_maxui : i32 to f32
      %i_minui = arith.minui %j, %k3 : i32
      %l_minui = arith.andi %i_minui, %k1023 : i32
      %r_minui = arith.sitofp %l_minui : i32 to f32
      %i_absi = math.absi %j : i32
      %r_absi = arith.sitofp %i_absi : i32 to f32
      %i_uitofp = arith.uitofp %j : i32 to f32
      %r_uitofp = arith.mulf %i_uitofp, %micro : f32
      %big = arith.constant 1000.0 : f32
      %xb = arith.mulf %x, %big : f32
      %i_fptosi = arith.fptosi %xb : f32 to i32
      %r_fptosi = arith.sitofp %i_fptosi : i32 to f32
      %i_fptoui = arith.fptoui %xb : f32 to i32
      %r_fptoui = arith.uitofp %i_fptoui : i32 to f32
      %h = arith.truncf %x : f32 to f16
      %hx = arith.extf %h : f16 to f32
      %b = arith.truncf %x : f32 to bf16
      %bx = arith.extf %b : bf16 to f32
      %j64 = arith.extsi %j : i32 to i64
      %r_extsi = arith.sitofp %j64 : i64 to f32
      %u64 = arith.extui %j : i32 to i64
      %f_extui = arith.uitofp %u64 : i64 to f32
      %r_extui = arith.mulf %f_extui, %micro : f32
      %j8 = arith.trunci %j : i32 to i8
      %r_trunci = arith.uitofp %j8 : i8 to f32
      %jx = arith.index_castui %j : i32 to index
      %jx32 = arith.index_cast %jx : index to i32
      %r_castui = arith.sitofp %jx32 : i32 to f32
      %bits = arith.bitcast %x : f32 to i32
      %lowbits = arith.andi %bits, %k1023 : i32
      %r_bitcast = arith.uitofp %lowbits : i32 to f32
      %ci_eq = arith.cmpi eq, %j, %k3 : i32
      %ci_ne = arith.cmpi ne, %j, %k3 : i32
      %ci_slt = arith.cmpi slt, %j, %k3 : i32
      %ci_sle = arith.cmpi sle, %j, %k3 : i32
      %ci_sgt = arith.cmpi sgt, %j, %k3 : i32
      %ci_sge = arith.cmpi sge, %j, %k3 : i32
      %ci_ult = arith.cmpi ult, %j, %k3 : i32
      %ci_ule = arith.cmpi ule, %j, %k3 : i32
      %ci_ugt = arith.cmpi ugt, %j, %k3 : i32
      %ci_uge = arith.cmpi uge, %j, %k3 : i32
      %cf_oeq = arith.cmpf oeq, %x, %yc : f32
      %cf_ogt = arith.cmpf ogt, %x, %yc : f32
      %cf_oge = arith.cmpf oge, %x, %yc : f32
      %cf_olt = arith.cmpf olt, %x, %yc : f32
      %cf_ole = arith.cmpf ole, %x, %yc : f32
      %cf_one = arith.cmpf one, %x, %yc : f32
      %cf_ord = arith.cmpf ord, %x, %yc : f32
      %cf_ueq = arith.cmpf ueq, %x, %yc : f32
      %cf_ugt = arith.cmpf ugt, %x, %yc : f32
      %cf_uge = arith.cmpf uge, %x, %yc : f32
      %cf_ult = arith.cmpf ult, %x, %yc : f32
      %cf_ule = arith.cmpf ule, %x, %yc : f32
      %cf_une = arith.cmpf une, %x, %yc : f32
      %cf_uno = arith.cmpf uno, %x, %yc : f32
      %cf_false = arith.cmpf false, %x, %yc : f32
      %cf_true = arith.cmpf true, %x, %yc : f32
      %acc0 = arith.constant 0 : i32
      %e0 = arith.extui %ci_eq : i1 to i32
      %sh0 = arith.constant 0 : i32
      %v0 = arith.shli %e0, %sh0 : i32
      %acc1 = arith.ori %acc0, %v0 : i32
      %e1 = arith.extui %ci_ne : i1 to i32
      %sh1 = arith.constant 1 : i32
      %v1 = arith.shli %e1, %sh1 : i32
      %acc2 = arith.ori %acc1, %v1 : i32
      %e2 = arith.extui %ci_slt : i1 to i32
      %sh2 = arith.constant 2 : i32
      %v2 = arith.shli %e2, %sh2 : i32
      %acc3 = arith.ori %acc2, %v2 : i32
      %e3 = arith.extui %ci_sle : i1 to i32
      %sh3 = arith.constant 3 : i32
      %v3 = arith.shli %e3, %sh3 : i32
      %acc4 = arith.ori %acc3, %v3 : i32
      %e4 = arith.extui %ci_sgt : i1 to i32
      %sh4 = arith.constant 4 : i32
      %v4 = arith.shli %e4, %sh4 : i32
      %acc5 = arith.ori %acc4, %v4 : i32
      %e5 = arith.extui %ci_sge : i1 to i32
      %sh5 = arith.constant 5 : i32
      %v5 = arith.shli %e5, %sh5 : i32
      %acc6 = arith.ori %acc5, %v5 : i32
      %e6 = arith.extui %ci_ult : i1 to i32
      %sh6 = arith.constant 6 : i32
      %v6 = arith.shli %e6, %sh6 : i32
      %acc7 = arith.ori %acc6, %v6 : i32
      %e7 = arith.extui %ci_ule : i1 to i32
      %sh7 = arith.constant 7 : i32
      %v7 = arith.shli %e7, %sh7 : i32
      %acc8 = arith.ori %acc7, %v7 : i32
      %e8 = arith.extui %ci_ugt : i1 to i32
      %sh8 = arith.constant 8 : i32
      %v8 = arith.shli %e8, %sh8 : i32
      %acc9 = arith.ori %acc8, %v8 : i32
      %e9 = arith.extui %ci_uge : i1 to i32
      %sh9 = arith.constant 9 : i32
      %v9 = arith.shli %e9, %sh9 : i32
      %acc10 = arith.ori %acc9, %v9 : i32
      %r_cmpi = arith.uitofp %acc10 : i32 to f32
      %e10 = arith.extui %cf_oeq : i1 to i32
      %sh10 = arith.constant 0 : i32
      %v10 = arith.shli %e10, %sh10 : i32
      %acc11 = arith.ori %acc0, %v10 : i32
      %e11 = arith.extui %cf_ogt : i1 to i32
      %sh11 = arith.constant 1 : i32
      %v11 = arith.shli %e11, %sh11 : i32
      %acc12 = arith.ori %acc11, %v11 : i32
      %e12 = arith.extui %cf_oge : i1 to i32
      %sh12 = arith.constant 2 : i32
      %v12 = arith.shli %e12, %sh12 : i32
      %acc13 = arith.ori %acc12, %v12 : i32
      %e13 = arith.extui %cf_olt : i1 to i32
      %sh13 = arith.constant 3 : i32
      %v13 = arith.shli %e13, %sh13 : i32
      %acc14 = arith.ori %acc13, %v13 : i32
      %e14 = arith.extui %cf_ole : i1 to i32
      %sh14 = arith.constant 4 : i32
      %v14 = arith.shli %e14, %sh14 : i32
      %acc15 = arith.ori %acc14, %v14 : i32
      %e15 = arith.extui %cf_one : i1 to i32
      %sh15 = arith.constant 5 : i32
      %v15 = arith.shli %e15, %sh15 : i32
      %acc16 = arith.ori %acc15, %v15 : i32
      %e16 = arith.extui %cf_ord : i1 to i32
      %sh16 = arith.constant 6 : i32
      %v16 = arith.shli %e16, %sh16 : i32
      %acc17 = arith.ori %acc16, %v16 : i32
      %e17 = arith.extui %cf_ueq : i1 to i32
      %sh17 = arith.constant 7 : i32
      %v17 = arith.shli %e17, %sh17 : i32
      %acc18 = arith.ori %acc17, %v17 : i32
      %e18 = arith.extui %cf_ugt : i1 to i32
      %sh18 = arith.constant 8 : i32
      %v18 = arith.shli %e18, %sh18 : i32
      %acc19 = arith.ori %acc18, %v18 : i32
      %e19 = arith.extui %cf_uge : i1 to i32
      %sh19 = arith.constant 9 : i32
      %v19 = arith.shli %e19, %sh19 : i32
      %acc20 = arith.ori %acc19, %v19 : i32
      %e20 = arith.extui %cf_ult : i1 to i32
      %sh20 = arith.constant 10 : i32
      %v20 = arith.shli %e20, %sh20 : i32
      %acc21 = arith.ori %acc20, %v20 : i32
      %e21 = arith.extui %cf_ule : i1 to i32
      %sh21 = arith.constant 11 : i32
      %v21 = arith.shli %e21, %sh21 : i32
      %acc22 = arith.ori %acc21, %v21 : i32
      %e22 = arith.extui %cf_une : i1 to i32
      %sh22 = arith.constant 12 : i32
      %v22 = arith.shli %e22, %sh22 : i32
      %acc23 = arith.ori %acc22, %v22 : i32
      %e23 = arith.extui %cf_uno : i1 to i32
      %sh23 = arith.constant 13 : i32
      %v23 = arith.shli %e23, %sh23 : i32
      %acc24 = arith.ori %acc23, %v23 : i32
      %e24 = arith.extui %cf_false : i1 to i32
      %sh24 = arith.constant 14 : i32
      %v24 = arith.shli %e24, %sh24 : i32
      %acc25 = arith.ori %acc24, %v24 : i32
      %e25 = arith.extui %cf_true : i1 to i32
      %sh25 = arith.constant 15 : i32
      %v25 = arith.shli %e25, %sh25 : i32
      %acc26 = arith.ori %acc25, %v25 : i32
      %r_cmpf = arith.uitofp %acc26 : i32 to f32
      %sel = arith.select %ci_slt, %x, %y : f32
      %row0 = arith.constant 0 : index
      memref.store %f_addf, %a[%row0, %tid] : memref<96x16xf32>
      %row1 = arith.constant 1 : index
      memref.store %f_subf, %a[%row1, %tid] : memref<96x16xf32>
      %row2 = arith.constant 2 : index
      memref.store %f_mulf, %a[%row2, %tid] : memref<96x16xf32>
      %row3 = arith.constant 3 : index
      memref.store %f_divf, %a[%row3, %tid] : memref<96x16xf32>
      %row4 = arith.constant 4 : index
      memref.store %f_remf, %a[%row4, %tid] : memref<96x16xf32>
      %row5 = arith.constant 5 : index
      memref.store %f_maximumf, %a[%row5, %tid] : memref<96x16xf32>
      %row6 = arith.constant 6 : index
      memref.store %f_minimumf, %a[%row6, %tid] : memref<96x16xf32>
      %row7 = arith.constant 7 : index
      memref.store %f_maxnumf, %a[%row7, %tid] : memref<96x16xf32>
      %row8 = arith.constant 8 : index
      memref.store %f_minnumf, %a[%row8, %tid] : memref<96x16xf32>
      %row9 = arith.constant 9 : index
      memref.store %f_negf, %a[%row9, %tid] : memref<96x16xf32>
      %row10 = arith.constant 10 : index
      memref.store %m_absf, %a[%row10, %tid] : memref<96x16xf32>
      %row11 = arith.constant 11 : index
      memref.store %m_sqrt, %a[%row11, %tid] : memref<96x16xf32>
      %row12 = arith.constant 12 : index
      memref.store %m_rsqrt, %a[%row12, %tid] : memref<96x16xf32>
      %row13 = arith.constant 13 : index
      memref.store %m_floor, %a[%row13, %tid] : memref<96x16xf32>
      %row14 = arith.constant 14 : index
      memref.store %m_ceil, %a[%row14, %tid] : memref<96x16xf32>
      %row15 = arith.constant 15 : index
      memref.store %m_trunc, %a[%row15, %tid] : memref<96x16xf32>
      %row16 = arith.constant 16 : index
      memref.store %m_round, %a[%row16, %tid] : memref<96x16xf32>
      %row17 = arith.constant 17 : index
      memref.store %m_roundeven, %a[%row17, %tid] : memref<96x16xf32>
      %row18 = arith.constant 18 : index
      memref.store %m_exp, %a[%row18, %tid] : memref<96x16xf32>
      %row19 = arith.constant 19 : index
      memref.store %m_exp2, %a[%row19, %tid] : memref<96x16xf32>
      %row20 = arith.constant 20 : index
      memref.store %m_expm1, %a[%row20, %tid] : memref<96x16xf32>
      %row21 = arith.constant 21 : index
      memref.store %m_log, %a[%row21, %tid] : memref<96x16xf32>
      %row22 = arith.constant 22 : index
      memref.store %m_log2, %a[%row22, %tid] : memref<96x16xf32>
      %row23 = arith.constant 23 : index
      memref.store %m_log1p, %a[%row23, %tid] : memref<96x16xf32>
      %row24 = arith.constant 24 : index
      memref.store %m_tanh, %a[%row24, %tid] : memref<96x16xf32>
      %row25 = arith.constant 25 : index
      memref.store %m_erf, %a[%row25, %tid] : memref<96x16xf32>
      %row26 = arith.constant 26 : index
      memref.store %m_sin, %a[%row26, %tid] : memref<96x16xf32>
      %row27 = arith.constant 27 : index
      memref.store %m_cos, %a[%row27, %tid] : memref<96x16xf32>
      %row28 = arith.constant 28 : index
      memref.store %m_tan, %a[%row28, %tid] : memref<96x16xf32>
      %row29 = arith.constant 29 : index
      memref.store %m_asin, %a[%row29, %tid] : memref<96x16xf32>
      %row30 = arith.constant 30 : index
      memref.store %m_acos, %a[%row30, %tid] : memref<96x16xf32>
      %row31 = arith.constant 31 : index
      memref.store %m_atan, %a[%row31, %tid] : memref<96x16xf32>
      %row32 = arith.constant 32 : index
      memref.store %m_sinh, %a[%row32, %tid] : memref<96x16xf32>
      %row33 = arith.constant 33 : index
      memref.store %m_cosh, %a[%row33, %tid] : memref<96x16xf32>
      %row34 = arith.constant 34 : index
      memref.store %m_powf, %a[%row34, %tid] : memref<96x16xf32>
      %row35 = arith.constant 35 : index
      memref.store %m_atan2, %a[%row35, %tid] : memref<96x16xf32>
      %row36 = arith.constant 36 : index
      memref.store %m_copysign, %a[%row36, %tid] : memref<96x16xf32>
      %row37 = arith.constant 37 : index
      memref.store %m_fma, %a[%row37, %tid] : memref<96x16xf32>
      %row38 = arith.constant 38 : index
      memref.store %r_addi, %a[%row38, %tid] : memref<96x16xf32>
      %row39 = arith.constant 39 : index
      memref.store %r_subi, %a[%row39, %tid] : memref<96x16xf32>
      %row40 = arith.constant 40 : index
      memref.store %r_muli, %a[%row40, %tid] : memref<96x16xf32>
      %row41 = arith.constant 41 : index
      memref.store %r_divui, %a[%row41, %tid] : memref<96x16xf32>
      %row42 = arith.constant 42 : index
      memref.store %r_remui, %a[%row42, %tid] : memref<96x16xf32>
      %row43 = arith.constant 43 : index
      memref.store %r_divsi, %a[%row43, %tid] : memref<96x16xf32>
      %row44 = arith.constant 44 : index
      memref.store %r_remsi, %a[%row44, %tid] : memref<96x16xf32>
      %row45 = arith.constant 45 : index
      memref.store %r_andi, %a[%row45, %tid] : memref<96x16xf32>
      %row46 = arith.constant 46 : index
      memref.store %r_ori, %a[%row46, %tid] : memref<96x16xf32>
      %row47 = arith.constant 47 : index
      memref.store %r_xori, %a[%row47, %tid] : memref<96x16xf32>
      %row48 = arith.constant 48 : index
      memref.store %r_shli, %a[%row48, %tid] : memref<96x16xf32>
      %row49 = arith.constant 49 : index
      memref.store %r_shrui, %a[%row49, %tid] : memref<96x16xf32>
      %row50 = arith.constant 50 : index
      memref.store %r_shrsi, %a[%row50, %tid] : memref<96x16xf32>
      %row51 = arith.constant 51 : index
      memref.store %r_maxsi, %a[%row51, %tid] : memref<96x16xf32>
      %row52 = arith.constant 52 : index
      memref.store %r_minsi, %a[%row52, %tid] : memref<96x16xf32>
      %row53 = arith.constant 53 : index
      memref.store %r_maxui, %a[%row53, %tid] : memref<96x16xf32>
      %row54 = arith.constant 54 : index
      memref.store %r_minui, %a[%row54, %tid] : memref<96x16xf32>
      %row55 = arith.constant 55 : index
      memref.store %r_absi, %a[%row55, %tid] : memref<96x16xf32>
      %row56 = arith.constant 56 : index
      memref.store %r_uitofp, %a[%row56, %tid] : memref<96x16xf32>
      %row57 = arith.constant 57 : index
      memref.store %r_fptosi, %a[%row57, %tid] : memref<96x16xf32>
      %row58 = arith.constant 58 : index
      memref.store %r_fptoui, %a[%row58, %tid] : memref<96x16xf32>
      %row59 = arith.constant 59 : index
      memref.store %hx, %a[%row59, %tid] : memref<96x16xf32>
      %row60 = arith.constant 60 : index
      memref.store %bx, %a[%row60, %tid] : memref<96x16xf32>
      %row61 = arith.constant 61 : index
      memref.store %r_extsi, %a[%row61, %tid] : memref<96x16xf32>
      %row62 = arith.constant 62 : index
      memref.store %r_extui, %a[%row62, %tid] : memref<96x16xf32>
      %row63 = arith.constant 63 : index
      memref.store %r_trunci, %a[%row63, %tid] : memref<96x16xf32>
      %row64 = arith.constant 64 : index
      memref.store %r_castui, %a[%row64, %tid] : memref<96x16xf32>
      %row65 = arith.constant 65 : index
      memref.store %r_bitcast, %a[%row65, %tid] : memref<96x16xf32>
      %row66 = arith.constant 66 : index
      memref.store %r_cmpi, %a[%row66, %tid] : memref<96x16xf32>
      %row67 = arith.constant 67 : index
      memref.store %r_cmpf, %a[%row67, %tid] : memref<96x16xf32>
      %row68 = arith.constant 68 : index
      memref.store %sel, %a[%row68, %tid] : memref<96x16xf32>
      gpu.return
    }
  }
}
