(module
  ;; Hostile fixture `table-bomb`: one funcref table with no maximum, grown by a million
  ;; elements (8 MB of host memory) per record.
  ;; A bare core module wrapped into a component by build.sh; it speaks the
  ;; canonical ABI of the sluice:plugin `transform` world by hand.
  (memory $m0 (export "memory") 2)
  (table $t 1 funcref)
  (global $heap (mut i32) (i32.const 1024))
  ;; A bump allocator over the first memory that wraps around: enough for
  ;; the small inputs the tests send.
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
        (i32.xor (i32.sub (local.get 2) (i32.const 1)) (i32.const -1))))
    (if (i32.gt_u (i32.add (local.get $p) (local.get 3)) (i32.const 131072))
      (then (local.set $p (i32.const 1024))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (local.get $p))
  ;; init: Ok(())
  (func (export "init") (param i32 i32) (result i32)
    (i32.store8 (i32.const 16) (i32.const 0))
    (i32.const 16))
  ;; process: grow the table by 1,000,000 elements; trap if refused, then Ok([]).
  (func (export "process")
    (param i32 i32 i32 i64 i32 i64 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (if (i32.eq (table.grow $t (ref.null func) (i32.const 1000000)) (i32.const -1))
      (then unreachable))
    (i32.store8 (i32.const 16) (i32.const 0))
    (i32.store (i32.const 20) (i32.const 0))
    (i32.store (i32.const 24) (i32.const 0))
    (i32.const 16))
)
