from django.urls import path
from django.views.generic import RedirectView

app_name = "ui"

urlpatterns = [
    path("", RedirectView.as_view(url="/login/"), name="home"),
    path("login/", RedirectView.as_view(url="/client/v4/accounts"), name="login"),
]
