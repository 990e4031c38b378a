/**
 * onnxruntime-node 1.30's Linux build carries Microsoft's telemetry SDK: with every process that
 * creates a session it writes `mat-debug-<pid>.log` and a session file into the temp directory,
 * keeps a device id and a growing event database (megabytes) under
 * ~/.cache/Microsoft/DeveloperTools/.onnxruntime, and uploads events over HTTPS when it can. A
 * field device must do none of that on a vendor's behalf. ORT_DISABLE_TELEMETRY turns it off;
 * the runtime reads it when it creates its environment (at the first session), so setting it
 * here, imported before onnxruntime-node by every module that uses it, is in time. An operator
 * who sets the variable keeps their choice.
 */
process.env.ORT_DISABLE_TELEMETRY ??= '1';
