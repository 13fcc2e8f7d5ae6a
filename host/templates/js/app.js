// __NAME__: a sluice plugin. It passes every record through unchanged and
// fails empty records as `invalid`; edit `process` to do real work.

// Called once per instance with the pipeline's `params` (or `sluice plugin
// run --config k=v`) as [key, value] pairs. Throw a string to refuse them.
export function init(params) {
  for (const [key] of params) {
    throw `__NAME__: unknown parameter \`${key}\``;
  }
}

// Called once per record (`value` and `key` are Uint8Arrays): return the
// outputs, or throw { kind: "invalid" | "transient", message }.
export function process(rec) {
  if (rec.value.length === 0) {
    throw { kind: "invalid", message: "empty record" };
  }
  return [{ route: undefined, key: rec.key, value: rec.value, headers: rec.headers }];
}
