import type { Writable } from "node:stream";
import { symbols } from "pino";
import { describe, expect, it } from "vitest";
import { captureLogs, duplicateKeys } from "./logs";

describe("duplicateKeys", () => {
  it("finds a key repeated in the same object, at any depth, and nothing else", () => {
    expect(duplicateKeys('{"a":1,"b":"a","a":2}')).toEqual(["a"]);
    expect(duplicateKeys('{"a":{"x":1,"x":[1,{"x":2}]},"b":[{"c":1},{"c":2}]}')).toEqual(["x"]);
    // Claves iguales en objetos distintos, valores que parecen claves, escapes: no cuentan.
    expect(duplicateKeys('{"a":{"b":1},"c":{"b":1},"d":["a","a"],"e":"\\",\\"e\\":"}')).toEqual([]);
    expect(duplicateKeys('{"msg":"x","err":{"msg":"y","stack":"at \\"x\\""}}')).toEqual([]);
  });

  it("makes a captured logger fail on a child that repeats its parent's key", async () => {
    const { logger, lines } = captureLogs();
    logger.child({ component: "a" }).info({ other: 1 }, "fine");
    expect(lines).toHaveLength(1);
    const stream = (logger as unknown as Record<symbol, Writable>)[symbols.streamSym];
    const failed = new Promise<Error>((resolve) => stream?.once("error", resolve));
    logger.child({ component: "a" }).child({ component: "b" }).info("repeated");
    expect((await failed).message).toContain("log line repeats component");
    expect(lines).toHaveLength(1);
  });
});
