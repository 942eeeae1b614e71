/// <reference path="./.sst/platform/config.d.ts" />

// Despliegue con SST: funciones admin en AWS Lambda, edge en Cloudflare Workers y workers en ECS.
// `sst dev` corre las funciones en vivo, los workers con `npm run dev:workers` y un nats-server local.
export default $config({
  app(input) {
    return {
      name: "farutech-orchestrator",
      removal: input?.stage === "production" ? "retain" : "remove",
      protect: input?.stage === "production",
      home: "aws",
      providers: { cloudflare: true },
    };
  },
  async run() {
    const databaseUrl = new sst.Secret("DatabaseUrl");
    const natsUrl = new sst.Secret("NatsUrl");
    const natsWsUrl = new sst.Secret("NatsWsUrl");
    const signingKeys = new sst.Secret("AuthSigningKeys");
    const encryptionKey = new sst.Secret("EncryptionKey");

    const api = new sst.aws.ApiGatewayV2("AdminApi");
    api.route("$default", {
      handler: "functions/lambda.handler",
      runtime: "nodejs20.x",
      timeout: "30 seconds",
      link: [databaseUrl, natsWsUrl, signingKeys],
    });

    const edge = new sst.cloudflare.Worker("Edge", {
      handler: "edge/worker.ts",
      url: true,
      link: [databaseUrl, signingKeys],
    });

    const vpc = new sst.aws.Vpc("Vpc");
    const cluster = new sst.aws.Cluster("Cluster", { vpc });
    new sst.aws.Service("Workers", {
      cluster,
      image: { context: ".", dockerfile: "infra/docker/Dockerfile", target: "worker" },
      link: [databaseUrl, natsUrl, encryptionKey],
      scaling: { min: 1, max: 4, cpuUtilization: 70 },
      dev: { command: "npm run dev:workers" },
    });

    new sst.x.DevCommand("Nats", {
      dev: { command: "nats-server -c infra/nats/nats.conf", autostart: true },
    });
    new sst.x.DevCommand("Migrate", {
      link: [databaseUrl],
      dev: { command: "npm run db:migrate", autostart: true },
    });

    return { adminApi: api.url, edge: edge.url };
  },
});
