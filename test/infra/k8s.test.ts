import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import * as appsV1 from "kubernetes-models/apps/v1";
import * as autoscalingV2 from "kubernetes-models/autoscaling/v2";
import * as batchV1 from "kubernetes-models/batch/v1";
import * as networkingV1 from "kubernetes-models/networking.k8s.io/v1";
import * as coreV1 from "kubernetes-models/v1";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { parseEnv } from "../../core/config";
import { generateEncryptionKey } from "../../core/secret-box";
import { COMMIT_BUDGET_MS } from "../../functions/middleware/idempotency";
import { functionsEnv } from "../../functions/runtime";
import { ENTRY_POINTS } from "../../scripts/build";
import { workersEnv } from "../../workers/runtime";
import { SHUTDOWN_DEADLINE_MS } from "../../workers/runtime/consumer";
import { envVarsReadByCode } from "./env-vars";

// infra/k8s sin clúster: cada objeto contra los esquemas de Kubernetes que publica el paquete
// kubernetes-models (validate() con ajv), y las referencias cruzadas entre objetos.
const DIR = "infra/k8s";

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
}
interface ContainerPort {
  name?: string;
  containerPort: number;
}
interface Probe {
  httpGet?: { path: string; port: string | number };
  exec?: { command: string[] };
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string; optional?: boolean } };
}
interface Container {
  name: string;
  image: string;
  command?: string[];
  ports?: ContainerPort[];
  env?: EnvVar[];
  envFrom?: { configMapRef?: { name: string } }[];
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
}
interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  terminationGracePeriodSeconds?: number;
  volumes?: { name: string; configMap?: { name: string } }[];
}
interface Workload {
  name: string;
  kind: string;
  labels: Record<string, string>;
  pod: PodSpec;
}

const files = readdirSync(DIR).filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml");
const objects: (K8sObject & { file: string })[] = files.flatMap((file) =>
  parseAllDocuments(readFileSync(join(DIR, file), "utf8")).map((doc) => ({
    ...(doc.toJS() as K8sObject),
    file,
  })),
);

type Model = new (data: never) => { validate(): void };
const MODELS: Record<string, Model> = {
  "v1/Namespace": coreV1.Namespace,
  "v1/ConfigMap": coreV1.ConfigMap,
  "v1/Service": coreV1.Service,
  "apps/v1/Deployment": appsV1.Deployment,
  "apps/v1/StatefulSet": appsV1.StatefulSet,
  "batch/v1/Job": batchV1.Job,
  "autoscaling/v2/HorizontalPodAutoscaler": autoscalingV2.HorizontalPodAutoscaler,
  "networking.k8s.io/v1/NetworkPolicy": networkingV1.NetworkPolicy,
};

function workloads(): Workload[] {
  return objects.flatMap((o) => {
    const template = (o.spec?.template ?? undefined) as
      | { metadata?: { labels?: Record<string, string> }; spec: PodSpec }
      | undefined;
    if (!template) return [];
    return [
      {
        name: o.metadata.name,
        kind: o.kind,
        labels: template.metadata?.labels ?? {},
        pod: template.spec,
      },
    ];
  });
}

function workloadPod(object: K8sObject): PodSpec {
  const template = object.spec?.template as { spec: PodSpec } | undefined;
  if (!template) throw new Error(`${object.metadata.name} has no pod template`);
  return template.spec;
}

function byKind(kind: string): (K8sObject & { file: string })[] {
  return objects.filter((o) => o.kind === kind);
}

function workload(name: string): Workload {
  const found = workloads().find((w) => w.name === name);
  if (!found) throw new Error(`no workload ${name}`);
  return found;
}

function portOf(container: Container, ref: string | number): number | undefined {
  return container.ports?.find((p) => p.name === ref || p.containerPort === ref)?.containerPort;
}

/** Secrets y claves documentados en infra/k8s/README.md (tabla `| \`secret\` | \`CLAVE\` |`). */
function documentedSecrets(): Set<string> {
  const doc = readFileSync(join(DIR, "README.md"), "utf8");
  return new Set(
    [...doc.matchAll(/^\| `([a-z0-9-]+)` \| `([A-Z_]+)` \|/gm)].map((m) => `${m[1]}/${m[2]}`),
  );
}

/** Rutas de salud que sirve cada imagen nuestra, leídas del código. */
const HEALTH_PATHS: Record<string, { source: string; paths: string[] }> = {
  "farutech/functions": { source: "functions/routes/health.ts", paths: ["/healthz", "/readyz"] },
  "farutech/worker": { source: "workers/main.ts", paths: ["/healthz", "/readyz"] },
};

describe("infra/k8s manifests", () => {
  it("has the seed's objects: functions and worker deployments, Postgres, NATS with its ConfigMap", () => {
    for (const f of [
      "functions-deployment.yaml",
      "worker-deployment.yaml",
      "postgres-statefulset.yaml",
      "nats-configmap.yaml",
    ])
      expect(files).toContain(f);
    expect(workload("farutech-functions").kind).toBe("Deployment");
    expect(workload("farutech-worker").kind).toBe("Deployment");
    expect(workload("postgres").kind).toBe("StatefulSet");
    expect(workload("nats").kind).toBe("StatefulSet");
  });

  it.each(objects.map((o) => [`${o.file}: ${o.kind}/${o.metadata.name}`, o] as const))(
    "%s validates against the Kubernetes schema",
    (_label, object) => {
      const Model = MODELS[`${object.apiVersion}/${object.kind}`];
      expect(Model, `no schema for ${object.apiVersion}/${object.kind}`).toBeDefined();
      if (Model) expect(() => new Model(object as never).validate()).not.toThrow();
    },
  );

  it("the schemas reject a broken manifest", () => {
    const broken = structuredClone(objects.find((o) => o.metadata.name === "farutech-worker"));
    if (!broken) throw new Error("no worker Deployment");
    const pod = workloadPod(broken);
    (pod.containers[0] as unknown as { ports: unknown }).ports = [{ containerPort: "9464" }];
    expect(() => new appsV1.Deployment(broken as never).validate()).toThrow(/integer/);
  });

  it("kustomization lists every manifest and no missing file", () => {
    const kustomization = parseAllDocuments(
      readFileSync(join(DIR, "kustomization.yaml"), "utf8"),
    )[0]?.toJS() as { resources: string[]; namespace: string };
    expect([...kustomization.resources].sort()).toEqual([...files].sort());
    expect(byKind("Namespace").map((n) => n.metadata.name)).toContain(kustomization.namespace);
  });

  it("Service selectors match pod labels and target declared container ports", () => {
    for (const service of byKind("Service")) {
      const spec = service.spec as {
        selector: Record<string, string>;
        ports: { port: number; targetPort: string | number }[];
      };
      const pods = workloads().filter((w) =>
        Object.entries(spec.selector).every(([k, v]) => w.labels[k] === v),
      );
      expect(pods.length, `Service ${service.metadata.name} selects no pods`).toBeGreaterThan(0);
      for (const pod of pods)
        for (const p of spec.ports)
          expect(
            pod.pod.containers.some((c) => portOf(c, p.targetPort) !== undefined),
            `${service.metadata.name}: targetPort ${p.targetPort}`,
          ).toBe(true);
    }
    for (const set of byKind("StatefulSet")) {
      const serviceName = (set.spec as { serviceName: string }).serviceName;
      expect(byKind("Service").map((s) => s.metadata.name)).toContain(serviceName);
    }
  });

  it("long-running containers have probes on real ports and paths, and resource requests and limits", () => {
    for (const w of workloads())
      for (const c of w.pod.containers) {
        expect(c.resources?.requests?.cpu && c.resources.requests.memory, c.name).toBeTruthy();
        expect(c.resources?.limits?.cpu && c.resources.limits.memory, c.name).toBeTruthy();
        if (w.kind === "Job") continue;
        for (const probe of [c.readinessProbe, c.livenessProbe]) {
          expect(probe, `${w.name}/${c.name} lacks a probe`).toBeDefined();
          if (!probe?.httpGet) continue;
          expect(portOf(c, probe.httpGet.port), `${w.name}: probe port`).toBeDefined();
          const known = HEALTH_PATHS[c.image.split(":")[0] ?? ""];
          if (!known) continue;
          expect(known.paths).toContain(probe.httpGet.path);
          expect(readFileSync(known.source, "utf8")).toContain(`"${probe.httpGet.path}"`);
        }
      }
  });

  it("lets the functions finish a request within its commit budget before the pod is killed", () => {
    // Una petición con Idempotency-Key puede confirmar hasta COMMIT_BUDGET_MS después de empezar:
    // matarla antes deja al cliente sin respuesta de un cambio que quizá no se confirmó.
    const functions = workload("farutech-functions");
    expect((functions.pod.terminationGracePeriodSeconds ?? 30) * 1000).toBeGreaterThan(
      COMMIT_BUDGET_MS,
    );
  });

  // Un Job aparte no se ordena con el rollout (el código nuevo arrancaba contra el esquema viejo)
  // y con otra etiqueta de imagen ni se vuelve a crear (su plantilla es inmutable).
  it("migrates in an initContainer of every pod that runs our code, with the same image", () => {
    expect(byKind("Job")).toEqual([]);
    const ours = workloads().filter((w) =>
      w.pod.containers.some((c) => c.image.startsWith("farutech/")),
    );
    expect(ours.map((w) => w.name).sort()).toEqual(["farutech-functions", "farutech-worker"]);
    for (const w of ours) {
      const [init] = w.pod.initContainers ?? [];
      expect(init?.command, w.name).toEqual(["node", "dist/db-cli.js", "migrate"]);
      expect(init?.image).toBe(w.pod.containers[0]?.image);
      const secret = init?.env?.find((e) => e.name === "DATABASE_URL")?.valueFrom?.secretKeyRef;
      expect(secret).toEqual({ name: "farutech-secrets", key: "DATABASE_URL" });
    }
  });

  it("keeps serving while the Service drops a stopping functions pod, within its grace period", () => {
    const functions = workload("farutech-functions");
    const [container] = functions.pod.containers;
    const preStop = container?.lifecycle?.preStop?.exec?.command ?? [];
    expect(preStop[0]).toBe("sleep");
    const seconds = Number(preStop[1]);
    expect(seconds).toBeGreaterThanOrEqual(5);
    expect((seconds * 1000 + COMMIT_BUDGET_MS) / 1000).toBeLessThanOrEqual(
      functions.pod.terminationGracePeriodSeconds ?? 30,
    );
  });

  it("gives the worker more than its 30 s drain and scales it with an HPA", () => {
    const worker = workload("farutech-worker");
    expect(worker.pod.terminationGracePeriodSeconds ?? 30).toBeGreaterThan(30);
    // El plazo que cumple workers/main.ts (sale pase lo que pase): el orquestador espera más.
    expect(SHUTDOWN_DEADLINE_MS).toBe(30_000);
    const [hpa] = byKind("HorizontalPodAutoscaler");
    if (!hpa) throw new Error("no HorizontalPodAutoscaler");
    const target = (hpa.spec as { scaleTargetRef: { kind: string; name: string } }).scaleTargetRef;
    expect(target).toEqual(
      expect.objectContaining({ kind: "Deployment", name: "farutech-worker" }),
    );
  });

  it("secrets are referenced, never inlined, and every reference is documented", () => {
    expect(byKind("Secret")).toEqual([]);
    const documented = documentedSecrets();
    expect(documented.size).toBeGreaterThan(2);
    const refs = workloads().flatMap((w) =>
      w.pod.containers.flatMap((c) =>
        (c.env ?? []).flatMap((e) => (e.valueFrom?.secretKeyRef ? [e.valueFrom.secretKeyRef] : [])),
      ),
    );
    expect(refs.length).toBeGreaterThan(3);
    for (const ref of refs) expect(documented).toContain(`${ref.name}/${ref.key}`);
    // Ningún valor literal con pinta de credencial.
    for (const w of workloads())
      for (const c of w.pod.containers)
        for (const e of c.env ?? [])
          expect(`${e.name}=${e.value ?? ""}`).not.toMatch(/(PASSWORD|SECRET|KEYS|DATABASE_URL)=./);
  });

  // Los nombres no bastan: un valor que el esquema rechaza ("1e3", un tope superado) deja al pod
  // en bucle de reinicios. ConfigMap, valores literales y Secrets (con valores de ejemplo válidos)
  // pasan por el esquema del componente.
  it("gives functions and workers an environment their own schema accepts", () => {
    const configMaps = new Map(byKind("ConfigMap").map((c) => [c.metadata.name, c]));
    const secretValues: Record<string, string> = {
      DATABASE_URL: "postgres://farutech:example@postgres:5432/farutech",
      ENCRYPTION_KEYS: JSON.stringify([generateEncryptionKey("k8s-test")]),
      NATS_TOKEN: "nats_example",
      SMTP_URL: "smtp://user:pass@smtp.example.com:587",
    };
    for (const [name, schema] of [
      ["farutech-functions", functionsEnv],
      ["farutech-worker", workersEnv],
    ] as const) {
      const [c] = workload(name).pod.containers;
      const env: Record<string, string> = {};
      for (const from of c?.envFrom ?? [])
        Object.assign(env, configMaps.get(from.configMapRef?.name ?? "")?.data ?? {});
      for (const e of c?.env ?? []) {
        const ref = e.valueFrom?.secretKeyRef;
        env[e.name] = ref ? (secretValues[ref.key] ?? "") : (e.value ?? "");
      }
      expect(() => parseEnv(schema, env), name).not.toThrow();
    }
  });

  it("ConfigMaps referenced by pods exist, and app settings are ones the code reads", () => {
    const configMaps = new Map(byKind("ConfigMap").map((c) => [c.metadata.name, c]));
    const known = envVarsReadByCode();
    for (const w of workloads())
      for (const c of w.pod.containers) {
        for (const from of c.envFrom ?? []) {
          const name = from.configMapRef?.name ?? "";
          const cm = configMaps.get(name);
          expect(cm, `${w.name}: ConfigMap ${name}`).toBeDefined();
          for (const key of Object.keys(cm?.data ?? {})) expect(known.has(key), key).toBe(true);
        }
        if (c.image.startsWith("farutech/"))
          for (const e of c.env ?? []) expect(known.has(e.name), `${w.name}: ${e.name}`).toBe(true);
      }
    for (const w of workloads())
      for (const v of w.pod.volumes ?? [])
        if (v.configMap) expect(configMaps.has(v.configMap.name)).toBe(true);
  });

  it("app containers run bundles that npm run build produces", () => {
    const bundles = Object.keys(ENTRY_POINTS).map((n) => `dist/${n}.js`);
    for (const w of workloads())
      for (const c of w.pod.containers)
        if (c.image.startsWith("farutech/")) {
          expect(c.command?.[0]).toBe("node");
          expect(bundles).toContain(c.command?.[1]);
        }
  });

  it("NetworkPolicies let only the app's pods reach NATS and Postgres, on ports they serve", () => {
    const selects = (labels: Record<string, string>) =>
      workloads().filter((w) => Object.entries(labels).every(([k, v]) => w.labels[k] === v));
    const policies = byKind("NetworkPolicy").map(
      (p) =>
        p.spec as {
          podSelector: { matchLabels: Record<string, string> };
          ingress: {
            from: { podSelector: { matchLabels: Record<string, string> } }[];
            ports: { port: number }[];
          }[];
        },
    );
    const guarded = policies.flatMap((p) => selects(p.podSelector.matchLabels).map((w) => w.name));
    expect(guarded.sort()).toEqual(["nats", "postgres"]);
    for (const policy of policies) {
      const [target] = selects(policy.podSelector.matchLabels);
      for (const rule of policy.ingress) {
        const clients = rule.from.flatMap((f) => selects(f.podSelector.matchLabels));
        expect(clients.length).toBe(rule.from.length);
        for (const { port } of rule.ports)
          expect(target?.pod.containers.some((c) => portOf(c, port))).toBe(true);
      }
    }
    // Los que hablan con NATS (funciones y workers) están entre los permitidos.
    const natsClients = policies
      .filter((p) => p.podSelector.matchLabels["app.kubernetes.io/name"] === "nats")
      .flatMap((p) =>
        p.ingress.flatMap((r) => r.from.flatMap((f) => selects(f.podSelector.matchLabels))),
      )
      .map((w) => w.name);
    expect(natsClients.sort()).toEqual(["farutech-functions", "farutech-worker"]);
  });

  it("NATS requires the token from the Secret, and every pod that talks to it has the token", () => {
    const secretEnv = (w: Workload) =>
      w.pod.containers.flatMap((c) =>
        (c.env ?? []).flatMap((e) =>
          e.valueFrom?.secretKeyRef ? [`${e.name}=${e.valueFrom.secretKeyRef.key}`] : [],
        ),
      );
    for (const name of ["nats", "farutech-functions", "farutech-worker"])
      expect(secretEnv(workload(name)), name).toContain("NATS_TOKEN=NATS_TOKEN");
    const conf = byKind("ConfigMap").find((c) => c.metadata.name === "nats-config")?.data?.[
      "nats.conf"
    ];
    expect(conf).toMatch(/authorization\s*\{\s*token:\s*\$NATS_TOKEN\s*\}/);
    // nats-server relee el valor como configuración: el token documentado empieza por una letra.
    const generated = /printf 'NATS_TOKEN=([^']*)' "\$\(openssl rand -hex (\d+)\)"/.exec(
      readFileSync(join(DIR, "README.md"), "utf8"),
    );
    expect(generated?.[1]).toMatch(/^[a-z]+_%s\\n$/);
    expect(Number(generated?.[2])).toBeGreaterThanOrEqual(16);
    // La monitorización (sin autenticación) no se expone por el Service.
    const service = byKind("Service").find((s) => s.metadata.name === "nats");
    if (!service) throw new Error("no nats Service");
    const ports = (service.spec as { ports: { port: number }[] }).ports.map((p) => p.port);
    expect(ports.sort()).toEqual([4222, 8080]);
  });

  it("NATS runs JetStream and WebSocket on the ports its Service and the app settings use", () => {
    const conf = byKind("ConfigMap").find((c) => c.metadata.name === "nats-config")?.data?.[
      "nats.conf"
    ];
    expect(conf).toMatch(/jetstream\s*\{/);
    const ws = Number(/websocket\s*\{[^}]*port:\s*(\d+)/.exec(conf ?? "")?.[1]);
    const client = Number(/^port:\s*(\d+)/m.exec(conf ?? "")?.[1]);
    const nats = workload("nats").pod.containers[0];
    expect(nats && portOf(nats, "websocket")).toBe(ws);
    expect(nats && portOf(nats, "client")).toBe(client);
    const app = byKind("ConfigMap").find((c) => c.metadata.name === "farutech-config")?.data ?? {};
    expect(app.NATS_URL).toBe(`nats://nats:${client}`);
    expect(app.NATS_WS_URL).toBe(`ws://nats:${ws}`);
    // Mismos puertos que la configuración de docker-compose y `sst dev`.
    const local = readFileSync("infra/nats/nats.conf", "utf8");
    expect(Number(/websocket\s*\{[^}]*port:\s*(\d+)/.exec(local)?.[1])).toBe(ws);
  });
});
