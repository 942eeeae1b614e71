// Tipos mínimos de los globales de SST que usa sst.config.ts. `sst install` genera los reales en
// .sst/platform/config.d.ts, pero necesita red y una cuenta; este archivo permite revisar el
// config con tsc aquí (`tsc -p infra/sst`). Firmas tomadas de la documentación de SST v3.

interface SstOutput<T> {
  apply<U>(fn: (value: T) => U): SstOutput<U>;
}
type SstInput<T> = T | SstOutput<T>;
type SstDuration = `${number} ${"second" | "seconds" | "minute" | "minutes"}`;

/** Todo componente de SST tiene `urn`; los enlazables (`link`) son componentes. */
interface SstLinkable {
  readonly urn: SstOutput<string>;
}

interface SstAppInput {
  stage?: string;
}

interface SstAppConfig {
  name: string;
  removal?: "remove" | "retain" | "retain-all";
  protect?: boolean;
  home: "aws" | "cloudflare" | "local";
  providers?: Record<string, unknown>;
}

interface SstConfig {
  app(input?: SstAppInput): SstAppConfig;
  run(): Promise<Record<string, unknown> | undefined>;
}

declare function $config(config: SstConfig): SstConfig;
declare const $app: { readonly name: string; readonly stage: string };
declare const $dev: boolean;
declare function $jsonParse(text: SstInput<string>): SstOutput<unknown>;

declare namespace sst {
  class Secret implements SstLinkable {
    constructor(name: string, placeholder?: string);
    readonly urn: SstOutput<string>;
    readonly value: SstOutput<string>;
  }

  namespace aws {
    interface FunctionArgs {
      handler: string;
      runtime?: "nodejs20.x" | "nodejs22.x";
      timeout?: SstDuration;
      memory?: `${number} MB` | `${number} GB`;
      link?: SstLinkable[];
      environment?: Record<string, SstInput<string>>;
    }

    class ApiGatewayV2 {
      constructor(name: string, args?: Record<string, unknown>);
      readonly url: SstOutput<string>;
      route(route: string, handler: string | FunctionArgs): unknown;
    }

    class Vpc {
      constructor(name: string, args?: Record<string, unknown>);
    }

    class Cluster {
      constructor(name: string, args: { vpc: Vpc });
    }

    interface TaskDefinitionArgs {
      containerDefinitions: SstInput<string>;
    }

    interface ServiceArgs {
      cluster: Cluster;
      image?: string | { context: string; dockerfile?: string; target?: string };
      cpu?: `${number} vCPU`;
      memory?: `${number} GB`;
      link?: SstLinkable[];
      environment?: Record<string, SstInput<string>>;
      health?: {
        command: string[];
        startPeriod?: SstDuration;
        interval?: SstDuration;
        timeout?: SstDuration;
        retries?: number;
      };
      scaling?: {
        min?: number;
        max?: number;
        cpuUtilization?: number | false;
        memoryUtilization?: number | false;
      };
      dev?: false | { command?: string; directory?: string; autostart?: boolean; url?: string };
      transform?: { taskDefinition?: (args: TaskDefinitionArgs) => void };
    }

    class Service implements SstLinkable {
      constructor(name: string, args: ServiceArgs);
      readonly urn: SstOutput<string>;
    }
  }

  namespace cloudflare {
    /** Argumentos del recurso de Pulumi (cloudflare.WorkersScript) que SST crea. */
    interface WorkerScriptArgs {
      compatibilityDate?: SstInput<string>;
      compatibilityFlags?: SstInput<string[]>;
    }

    class Worker implements SstLinkable {
      constructor(
        name: string,
        args: {
          handler: string;
          url?: boolean;
          domain?: string;
          link?: SstLinkable[];
          environment?: Record<string, SstInput<string>>;
          /** `esbuild` se aplica sobre las opciones con que SST empaqueta el worker. */
          build?: { esbuild?: Record<string, unknown>; minify?: boolean };
          transform?: { worker?: (args: WorkerScriptArgs) => void };
        },
      );
      readonly urn: SstOutput<string>;
      readonly url: SstOutput<string | undefined>;
    }
  }

  namespace x {
    class DevCommand {
      constructor(
        name: string,
        args: {
          link?: SstLinkable[];
          environment?: Record<string, SstInput<string>>;
          dev: { command: string; title?: string; directory?: string; autostart?: boolean };
        },
      );
    }
  }
}
