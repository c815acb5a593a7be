// Executes read_file through clawq's TaskService. Usage:
//   node execute.js [HOST:PORT] [PATH]
// GOOGLEAPIS_PROTOS points at a folder holding google/rpc/status.proto (the Python
// package googleapis-common-protos ships one; the test sets it).
const path = require("path");
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");

const protos = process.env.CLAWQ_PROTOS || path.join(__dirname, "..", "..", "protos");
const googleapis = process.env.GOOGLEAPIS_PROTOS;
const def = loader.loadSync("clawq/v1/task_service.proto", {
  includeDirs: [protos, googleapis],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
});
const { TaskService } = grpc.loadPackageDefinition(def).clawq.v1;
const client = new TaskService(process.argv[2] || "127.0.0.1:50051", grpc.credentials.createInsecure());

client.Execute(
  { call: { tool: "read_file", read_file: { path: process.argv[3] || "notes.txt" } } },
  (err, res) => {
    if (err) {
      console.error(`${grpc.status[err.code]}: ${err.details}`);
      process.exit(2);
    }
    const task = res.task;
    if (task.state !== "TASK_STATE_SUCCEEDED") {
      console.error(`${task.state}: ${task.error.reason} ${task.error.message}`);
      process.exit(1);
    }
    process.stdout.write(task.result.output.toString());
  },
);
