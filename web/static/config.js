// The Configuration page: edit, add, disable or delete one entry of the runtime configuration,
// test a draft with the rule tester, list a version's changes, restore a version. Every change
// names the version it was made from (Base), so that another admin's change is never overwritten.
(function () {
  var csrf = document.body.dataset.csrf, api = "../config";
  var doc = JSON.parse(document.getElementById("document").textContent);
  var version = parseInt(document.getElementById("version").textContent, 10);
  var form = document.getElementById("editor"), message = document.getElementById("message");
  var paths = JSON.parse(document.getElementById("sections").textContent);   // section -> keys in the document
  function add(parent, tag, text) { var e = document.createElement(tag); e.textContent = text; parent.appendChild(e); return e; }
  function entries(d, section, create) {
    var where = d, path = paths[section];
    for (var i = 0; i < path.length; i++) {
      if (where[path[i]] === undefined) {
        if (!create) { return undefined; }
        where[path[i]] = (i === path.length - 1 && section === "routes") ? [] : {};
      }
      where = where[path[i]];
    }
    return where;
  }
  function entryOf(section, name) {
    var all = entries(doc, section, false);
    if (section === "routes") { return (all || []).filter(function (r) { return r.Name === name; })[0]; }
    return all ? all[name] : undefined;
  }
  function call(method, url, body) {
    return fetch(url, {method: method, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
                       headers: {"Content-Type": "application/json", "X-Courier-CSRF": csrf}})
      .then(function (r) { return r.json().then(function (data) { return {ok: r.ok, data: data}; }); });
  }
  function done(r) {
    if (r.ok) { location.reload(); } else { message.textContent = r.data.error; }
  }
  function entryValue() {
    var section = form.elements.section.value, text = form.elements.entry.value;
    if (section === "scripts") { return text; }
    try { return JSON.parse(text); } catch (e) { message.textContent = "the entry is not valid JSON: " + e.message; return undefined; }
  }
  document.querySelectorAll("button.edit").forEach(function (button) {
    button.addEventListener("click", function () {
      var section = button.dataset.section, name = button.dataset.name, entry = entryOf(section, name);
      form.elements.section.value = section;
      form.elements.name.value = name;
      form.elements.entry.value = section === "scripts" ? entry : JSON.stringify(entry, null, 2);
      document.getElementById("editor-title").textContent = "Edit " + name;
      form.elements.entry.focus();
    });
  });
  // Routes, folders, archives and buckets carry Enabled themselves; a node's is in its Courier.Nodes settings.
  document.querySelectorAll("button.toggle").forEach(function (button) {
    button.addEventListener("click", function () {
      var section = button.dataset.section, name = button.dataset.name;
      var own = ["routes", "folders", "archives", "buckets"].indexOf(section) >= 0, target = own ? section : "node-settings";
      var entry = JSON.parse(JSON.stringify((own ? entryOf(section, name) : entryOf("node-settings", name)) || {}));
      entry.Enabled = entry.Enabled === false;
      call("PUT", api + "/" + target + "/" + encodeURIComponent(name),
           {Entry: entry, Base: version, Comment: (entry.Enabled ? "enabled " : "disabled ") + name}).then(done);
    });
  });
  document.querySelectorAll("button.delete").forEach(function (button) {
    button.addEventListener("click", function () {
      if (!window.confirm("Delete " + button.dataset.name + "? (a new version; it can be restored)")) { return; }
      call("DELETE", api + "/" + button.dataset.section + "/" + encodeURIComponent(button.dataset.name) + "?base=" + version).then(done);
    });
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var entry = entryValue();
    if (entry === undefined) { return; }
    call("PUT", api + "/" + form.elements.section.value + "/" + encodeURIComponent(form.elements.name.value),
         {Entry: entry, Base: version, Comment: form.elements.comment.value || null}).then(done);
  });
  document.getElementById("test-draft").addEventListener("click", function () {
    var entry = entryValue(), section = form.elements.section.value, name = form.elements.name.value;
    if (entry === undefined) { return; }
    var draft = JSON.parse(JSON.stringify(doc)), all = entries(draft, section, true);
    if (section === "routes") {
      entry.Name = name;
      var at = all.map(function (r) { return r.Name; }).indexOf(name);
      if (at < 0) { all.push(entry); } else { all[at] = entry; }
    } else { all[name] = entry; }
    var tags = {}, body = {Draft: draft};
    form.elements.tags.value.split("\n").forEach(function (line) {
      var at = line.indexOf("=");
      if (at > 0) { tags[line.slice(0, at).trim()] = line.slice(at + 1).trim(); }
    });
    ["CallingAet", "CalledAet", "RemoteIp"].forEach(function (k) { if (k in tags) { body[k] = tags[k]; delete tags[k]; } });
    body.Tags = tags;
    call("POST", "../routes/test", body).then(function (r) {
      var out = document.getElementById("draft-result");
      out.textContent = "";
      if (!r.ok) { message.textContent = r.data.error; return; }
      message.textContent = "";
      add(out, "h3", "With the draft, routes that fire");
      var list = add(out, "ul", "");
      list.id = "draft-fired";
      (r.data.Fired.length ? r.data.Fired : ["none"]).forEach(function (n) { add(list, "li", n); });
      r.data.Errors.forEach(function (e) { add(out, "p", "script error in " + e.Route + ": " + e.Error); });
    });
  });
  document.querySelectorAll("button.changes").forEach(function (button) {
    button.addEventListener("click", function () {
      call("GET", api + "/versions/" + button.dataset.version + "/diff").then(function (r) {
        var out = document.getElementById("changes");
        out.textContent = "";
        if (!r.ok) { message.textContent = r.data.error; return; }
        add(out, "h3", "Version " + r.data.To + " against " + (r.data.From || "nothing"));
        var list = add(out, "ul", "");
        list.id = "change-list";
        r.data.Changes.forEach(function (c) {
          var text = c.Change + " " + c.Path;
          if (c.Change === "changed") { text += ": " + JSON.stringify(c.Old) + " -> " + JSON.stringify(c.New); }
          add(list, "li", text);
        });
        if (!r.data.Changes.length) { add(list, "li", "no change"); }
      });
    });
  });
  document.querySelectorAll("button.restore").forEach(function (button) {
    button.addEventListener("click", function () {
      if (!window.confirm("Make version " + button.dataset.version + " the configuration in force?")) { return; }
      call("POST", api + "/versions/" + button.dataset.version + "/restore", {Base: version}).then(done);
    });
  });
})();
