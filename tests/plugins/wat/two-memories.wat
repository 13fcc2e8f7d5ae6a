(module
  ;; Hostile fixture `two-memories`: two linear memories, each grown to 3 MiB per record.
  ;; Each is under a 4 MiB cap on its own; together they are over it.
  ;; A bare core module wrapped into a component by build.sh; it speaks the
  ;; canonical ABI of the sluice:plugin `transform` world by hand.
  (memory $m0 (export "memory") 2)
  (memory $m1 0)
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
  ;; process: grow each memory by 48 pages (3 MiB); trap if a growth is refused, then Ok([]).
  (func (export "process")
    (param i32 i32 i32 i64 i32 i64 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (if (i32.eq (memory.grow $m0 (i32.const 48)) (i32.const -1)) (then unreachable))
    (if (i32.eq (memory.grow $m1 (i32.const 48)) (i32.const -1)) (then unreachable))
    (i32.store8 (i32.const 16) (i32.const 0))
    (i32.store (i32.const 20) (i32.const 0))
    (i32.store (i32.const 24) (i32.const 0))
    (i32.const 16))
)
