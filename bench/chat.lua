-- wrk script: a small non-streamed chat completion, the common case for a gateway.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"bench","messages":[{"role":"system","content":"You are terse."},' ..
           '{"role":"user","content":"Say hello to the benchmark."}],"max_tokens":16}'
