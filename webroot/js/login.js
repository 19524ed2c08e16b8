/*
 * GDTS login page: posts the credentials to auth/login, which sets the session
 * cookie (HttpOnly), then opens the console at what the address asked for (the
 * "#log=..." of a notification's link survives the redirect here). Errors are
 * shown with .text().
 */
(function ($) {
  'use strict';

  $(function () {
    $('#login-form').on('submit', function (event) {
      event.preventDefault();
      var $error = $('#login-error').addClass('d-none');
      $('#login-submit').prop('disabled', true);
      $.ajax({
        url: 'auth/login',
        method: 'POST',
        data: { username: $('#login-username').val(), password: $('#login-password').val() },
        dataType: 'json'
      }).done(function () {
        window.location.assign('./' + window.location.hash);
      }).fail(function (xhr) {
        var body = xhr.responseJSON;
        $error.text(body && body.msg ? String(body.msg) : 'HTTP ' + xhr.status).removeClass('d-none');
      }).always(function () {
        $('#login-submit').prop('disabled', false);
      });
    });
    $('#login-username').trigger('focus');
  });
}(jQuery));
