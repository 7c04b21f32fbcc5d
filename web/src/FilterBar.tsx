// The filter bar: chips (field + value, autocompleted from the server's filter hints) and an
// expression box for the filter language; `/` focuses the box from anywhere.
import { useEffect, useRef, useState } from "react";
import { filterHints } from "./api";
import { CHIP_FIELDS, type Chip, type ChipField, type View, chipExpression, filterOf } from "./view";

const HINT_FIELDS: Partial<Record<ChipField, string[]>> = {
  namespace: ["source_namespace", "dest_namespace"],
  pod: ["source_name", "dest_name"],
  policy_kind: ["policy_kind"],
  policy_tier: ["policy_tier"],
  policy_namespace: ["policy_namespace"],
  policy_name: ["policy_name"],
};

const FIXED_VALUES: Partial<Record<ChipField, string[]>> = {
  protocol: ["tcp", "udp", "icmp", "sctp"],
  action: ["allow", "deny"],
  pending: ["allow", "deny"],
  reporter: ["src", "dst"],
  policy_kind: ["knp", "np", "gnp", "snp", "sgnp", "sknp", "kcnp", "pro", "eot"],
};

export function FilterBar({
  view,
  setView,
  error,
}: {
  view: View;
  setView: (update: (view: View) => View, push?: boolean) => void;
  error?: string;
}) {
  const [field, setField] = useState<ChipField>("namespace");
  const [value, setValue] = useState("");
  const [chipError, setChipError] = useState<string>();
  const [expression, setExpression] = useState(view.expression);
  const [hints, setHints] = useState<string[]>([]);
  const expressionBox = useRef<HTMLInputElement>(null);

  useEffect(() => setExpression(view.expression), [view.expression]);

  useEffect(() => {
    const onKey = (event: KeyboardEvent) => {
      const target = event.target as HTMLElement;
      if (event.key === "/" && !["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName)) {
        event.preventDefault();
        expressionBox.current?.focus();
      }
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, []);

  useEffect(() => {
    const fields = HINT_FIELDS[field];
    if (!fields) {
      setHints(FIXED_VALUES[field] ?? []);
      return;
    }
    const abort = new AbortController();
    const timer = window.setTimeout(async () => {
      try {
        const filter = filterOf(view);
        const pages = await Promise.all(fields.map((f) => filterHints(f, filter, abort.signal)));
        const values = new Set<string>(FIXED_VALUES[field] ?? []);
        for (const page of pages) for (const item of page.items) if (item.value.includes(value)) values.add(item.value);
        setHints([...values].slice(0, 50));
      } catch {
        // Hints are a convenience; typing still works without them.
      }
    }, 150);
    return () => {
      abort.abort();
      window.clearTimeout(timer);
    };
  }, [field, value, view]);

  const addChip = () => {
    const chip: Chip = { field, value: value.trim() };
    const expression = chipExpression(chip);
    if (typeof expression !== "string") {
      setChipError(expression.error);
      return;
    }
    setChipError(undefined);
    setValue("");
    setView((v) => ({ ...v, chips: [...v.chips, chip], selected: undefined }), true);
  };

  return (
    <>
      <form
        className="toolbar"
        role="search"
        aria-label="Filter flows"
        onSubmit={(event) => {
          event.preventDefault();
          if (value.trim()) addChip();
          setView((v) => ({ ...v, expression, selected: undefined }), true);
        }}
      >
        <div className="chips" aria-label="Active filters">
          {view.chips.map((chip, index) => (
            <span className="chip" key={`${chip.field}:${chip.value}:${index}`} data-testid="chip">
              {CHIP_FIELDS[chip.field]}: {chip.value}
              <button
                type="button"
                aria-label={`Remove filter ${CHIP_FIELDS[chip.field]} ${chip.value}`}
                onClick={() => setView((v) => ({ ...v, chips: v.chips.filter((_, i) => i !== index) }), true)}
              >
                ×
              </button>
            </span>
          ))}
        </div>
        <label className="sr-only" htmlFor="chip-field">
          Filter field
        </label>
        <select id="chip-field" value={field} onChange={(e) => setField(e.target.value as ChipField)}>
          {Object.entries(CHIP_FIELDS).map(([key, label]) => (
            <option key={key} value={key}>
              {label}
            </option>
          ))}
        </select>
        <label className="sr-only" htmlFor="chip-value">
          Filter value
        </label>
        <input
          id="chip-value"
          list="chip-hints"
          placeholder={field === "label" ? "key=value" : "value"}
          value={value}
          onChange={(e) => setValue(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter") {
              e.preventDefault();
              addChip();
            }
          }}
        />
        <datalist id="chip-hints">
          {hints.map((hint) => (
            <option key={hint} value={hint} />
          ))}
        </datalist>
        <button type="button" onClick={addChip}>
          Add
        </button>
        <label className="sr-only" htmlFor="expression">
          Filter expression
        </label>
        <input
          id="expression"
          ref={expressionBox}
          className="expression"
          placeholder='Filter expression, e.g. dest_port = 443 AND action = deny   (press / to focus)'
          value={expression}
          onChange={(e) => setExpression(e.target.value)}
        />
        <button type="submit">Apply</button>
        {(view.chips.length > 0 || view.expression) && (
          <button type="button" onClick={() => setView((v) => ({ ...v, chips: [], expression: "" }), true)}>
            Clear
          </button>
        )}
      </form>
      {(chipError || error) && (
        <div className="error" role="alert">
          {chipError ?? error}
        </div>
      )}
    </>
  );
}
