;; The built-in hello example that `trellis up` runs with no manifest: a wasi:http handler
;; answering `hello from Trellis at PATH`. Written by hand as a core module so that building the
;; `trellis` binary needs neither the wasm32-wasip2 target nor a network; `host/build.rs` makes
;; it a component against `hello.wit` (as `wasm-tools component new` would).
;;
;; Memory: the return areas of imported calls at 0..64, constant strings from 128, and a bump
;; heap from 1024 (reset by every request) for the path the host hands over and the body.
(module
  (import "wasi:http/types@0.2.0" "[constructor]fields" (func $fields_new (result i32)))
  ;; (fields, name ptr, name len, value ptr, value len, return area)
  (import "wasi:http/types@0.2.0" "[method]fields.append"
    (func $fields_append (param i32 i32 i32 i32 i32 i32)))
  (import "wasi:http/types@0.2.0" "[constructor]outgoing-response"
    (func $response_new (param i32) (result i32)))
  (import "wasi:http/types@0.2.0" "[method]outgoing-response.body"
    (func $response_body (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[method]outgoing-body.write"
    (func $body_write (param i32 i32)))
  ;; (body, trailers is-some, trailers, return area)
  (import "wasi:http/types@0.2.0" "[static]outgoing-body.finish"
    (func $body_finish (param i32 i32 i32 i32)))
  ;; (outparam, then result<outgoing-response, error-code> flattened: tag, joined payload)
  (import "wasi:http/types@0.2.0" "[static]response-outparam.set"
    (func $outparam_set (param i32 i32 i32 i32 i64 i32 i32 i32 i32)))
  (import "wasi:http/types@0.2.0" "[method]incoming-request.path-with-query"
    (func $path_with_query (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[resource-drop]incoming-request"
    (func $drop_request (param i32)))
  ;; (stream, bytes ptr, bytes len, return area)
  (import "wasi:io/streams@0.2.0" "[method]output-stream.blocking-write-and-flush"
    (func $write_and_flush (param i32 i32 i32 i32)))
  (import "wasi:io/streams@0.2.0" "[resource-drop]output-stream"
    (func $drop_stream (param i32)))

  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))

  (data (i32.const 128) "content-type")                ;; 12 bytes
  (data (i32.const 144) "text/plain; charset=utf-8")   ;; 25 bytes
  (data (i32.const 176) "hello from Trellis at ")     ;; 22 bytes

  ;; Allocations the host makes (the path string): bump, growing memory as needed.
  (func $cabi_realloc (export "cabi_realloc")
    (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $at i32) (local $end i32)
    (local.set $at
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (local.set $end (i32.add (local.get $at) (local.get $size)))
    (if (i32.gt_u (local.get $end) (i32.shl (memory.size) (i32.const 16)))
      (then
        (if (i32.eq
              (memory.grow
                (i32.shr_u
                  (i32.add
                    (i32.sub (local.get $end) (i32.shl (memory.size) (i32.const 16)))
                    (i32.const 65535))
                  (i32.const 16)))
              (i32.const -1))
          (then unreachable))))
    (global.set $heap (local.get $end))
    (if (local.get $old_size)
      (then (memory.copy (local.get $at) (local.get $old) (local.get $old_size))))
    (local.get $at))

  ;; A `result<own<T>, _>` in the return area: the handle, or a trap when it is an error.
  (func $ok_handle (result i32)
    (if (i32.load8_u (i32.const 0)) (then unreachable))
    (i32.load (i32.const 4)))

  (func (export "wasi:http/incoming-handler@0.2.0#handle") (param $request i32) (param $out i32)
    (local $path i32) (local $path_len i32) (local $text i32) (local $len i32)
    (local $headers i32) (local $response i32) (local $body i32) (local $stream i32)
    (global.set $heap (i32.const 1024))
    ;; option<string>: tag at 0, pointer at 4, length at 8.
    (call $path_with_query (local.get $request) (i32.const 0))
    (if (i32.load8_u (i32.const 0))
      (then
        (local.set $path (i32.load (i32.const 4)))
        (local.set $path_len (i32.load (i32.const 8)))))
    (call $drop_request (local.get $request))
    ;; The body: the greeting, the path, a newline.
    (local.set $len (i32.add (i32.const 23) (local.get $path_len)))
    (local.set $text (call $cabi_realloc (i32.const 0) (i32.const 0) (i32.const 1) (local.get $len)))
    (memory.copy (local.get $text) (i32.const 176) (i32.const 22))
    (memory.copy (i32.add (local.get $text) (i32.const 22)) (local.get $path) (local.get $path_len))
    (i32.store8 (i32.add (local.get $text) (i32.sub (local.get $len) (i32.const 1))) (i32.const 10))

    (local.set $headers (call $fields_new))
    (call $fields_append (local.get $headers)
      (i32.const 128) (i32.const 12) (i32.const 144) (i32.const 25) (i32.const 0))
    (local.set $response (call $response_new (local.get $headers)))
    (call $response_body (local.get $response) (i32.const 0))
    (local.set $body (call $ok_handle))
    (call $body_write (local.get $body) (i32.const 0))
    (local.set $stream (call $ok_handle))
    ;; The response head goes out now; the body streams after it.
    (call $outparam_set (local.get $out)
      (i32.const 0) (local.get $response) (i32.const 0) (i64.const 0)
      (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))
    (call $write_and_flush (local.get $stream) (local.get $text) (local.get $len) (i32.const 0))
    (call $drop_stream (local.get $stream))
    (call $body_finish (local.get $body) (i32.const 0) (i32.const 0) (i32.const 0))))
