import { describe, expect, it } from "vitest";
import { afterFailure, MAX_DELIVER, retryDelayMs } from "./retry-policy";

describe("retryDelayMs", () => {
  it("sigue 500 ms × 2^(n−1) con tope de 5 s", () => {
    expect([1, 2, 3, 4, 5, 6].map(retryDelayMs)).toEqual([500, 1000, 2000, 4000, 5000, 5000]);
    expect(retryDelayMs(50)).toBe(5000);
  });

  it.each([0, -1, 1.5, Number.NaN])("lanza RangeError para %s", (n) => {
    expect(() => retryDelayMs(n)).toThrow(RangeError);
  });
});

describe("afterFailure", () => {
  it("MaxDeliver es 5", () => {
    expect(MAX_DELIVER).toBe(5);
  });

  it.each([
    [1, 500],
    [2, 1000],
    [3, 2000],
    [4, 4000],
  ])("la entrega %i fallida se reintenta tras %i ms", (delivery, delayMs) => {
    expect(afterFailure(delivery, false)).toEqual({ action: "retry", delayMs });
  });

  it.each([5, 6, 10])("la entrega %i va a dead letter", (delivery) => {
    expect(afterFailure(delivery, false)).toEqual({ action: "dead_letter" });
  });

  it.each([1, 2, 3, 4, 5])("un error permanente en la entrega %i va a dead letter", (delivery) => {
    expect(afterFailure(delivery, true)).toEqual({ action: "dead_letter" });
  });
});
