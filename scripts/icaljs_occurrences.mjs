// Expand the meetups of .ics files with ical.js, the parser Thunderbird's calendar uses.
// Usage: node icaljs_occurrences.mjs FILE...  (ICALJS = path of ical.js's dist/ical.js)
// Prints one JSON object per file: {file, events: [{uid, status, occurrences: [[start, end,
// location], ...]}]} with instants in UTC (ISO 8601). Used by scripts/check_ics_icaljs.py.
import fs from "node:fs";
import { pathToFileURL } from "node:url";

const ICAL = (await import(pathToFileURL(process.env.ICALJS).href)).default;
const LIMIT = 500;

for (const file of process.argv.slice(2)) {
  const calendar = new ICAL.Component(ICAL.parse(fs.readFileSync(file, "utf8")));
  for (const zone of calendar.getAllSubcomponents("vtimezone")) {
    ICAL.TimezoneService.register(new ICAL.Timezone(zone));
  }
  const byUid = new Map();
  for (const vevent of calendar.getAllSubcomponents("vevent")) {
    const uid = vevent.getFirstPropertyValue("uid");
    if (!byUid.has(uid)) byUid.set(uid, { master: null, exceptions: [] });
    const group = byUid.get(uid);
    if (vevent.hasProperty("recurrence-id")) group.exceptions.push(vevent);
    else group.master = vevent;
  }
  const events = [];
  for (const [uid, { master, exceptions }] of byUid) {
    const event = new ICAL.Event(master, { strictExceptions: true, exceptions });
    const occurrences = [];
    const add = (start, end, item) =>
      occurrences.push([
        start.toJSDate().toISOString(),
        end.toJSDate().toISOString(),
        item.location ?? null,
      ]);
    if (event.isRecurring()) {
      const iterator = event.iterator();
      for (let next = iterator.next(); next && occurrences.length < LIMIT; next = iterator.next()) {
        const details = event.getOccurrenceDetails(next);
        add(details.startDate, details.endDate, details.item);
      }
    } else {
      add(event.startDate, event.endDate, event);
    }
    events.push({ uid, status: master.getFirstPropertyValue("status"), occurrences });
  }
  console.log(JSON.stringify({ file, events }));
}
