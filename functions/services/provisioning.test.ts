import { describe, expect, it } from "vitest";
import { AppError } from "../../core/errors";
import { normalizeFeatureMap } from "./provisioning";

describe("normalizeFeatureMap", () => {
  it("normalizes feature codes to upper case and limit names to lower case", () => {
    expect(normalizeFeatureMap({ advanced_reports: true, MAX_USERS: 20 }, "body.features")).toEqual(
      { ADVANCED_REPORTS: true, max_users: 20 },
    );
  });

  it("names the keys that collapse into one", () => {
    let error: unknown;
    try {
      normalizeFeatureMap({ max_users: 10, MAX_USERS: 20 }, "body.customFeatures");
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(AppError);
    expect((error as AppError).fields).toEqual([
      { path: "body.customFeatures.MAX_USERS", message: "Duplicated key" },
    ]);
  });

  it("does not take names of Object.prototype for duplicates", () => {
    expect(normalizeFeatureMap({ constructor: 5, toString: 2 }, "body.features")).toEqual({
      constructor: 5,
      tostring: 2,
    });
  });
});
