// response_mode=form_post: hand the response to the client, as Entra's "Working..." page does
document.getElementById("hiddenform").submit();
