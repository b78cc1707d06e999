// Injected into Orthanc Explorer (orthanc.ExtendOrthancExplorer): two buttons on a study's page
// that open Courier's send page for that study.
$('#study').live('pagebeforeshow', function () {
  var study = $.mobile.pageData ? $.mobile.pageData.uuid : null;
  $('#courier-send, #courier-pseudonymize').remove();
  if (!study) { return; }
  var base = '../courier/ui/send?study=' + encodeURIComponent(study);
  $('<a id="courier-send" data-role="button" data-icon="forward" target="_blank">Send with Courier</a>')
    .attr('href', base).insertAfter('#study-delete').button();
  $('<a id="courier-pseudonymize" data-role="button" data-icon="forward" target="_blank">Pseudonymize and send</a>')
    .attr('href', base + '&pseudonymize=1').insertAfter('#courier-send').button();
});
